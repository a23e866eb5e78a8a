"""The editor side: the recolor_with_palette package (the whole plug-in, for Krita and
GIMP 3, standard library only; pyzmq is used when the editor's Python can load it), GIMP's
entry script (gimp/) and Krita's plug-in description (krita/)."""
