"""The editor side: Krita/GIMP plug-ins and the client code they share with no dependency
beyond the standard library (pyzmq is used when the editor's Python can load it)."""
