"""Code shared by the four real dataset builders: layout, Beam, report."""
