"""One module per dataset format, each registering a
:class:`~fmadv.data.format.DatasetFormat` with
:func:`~fmadv.data.format.register_format`.

The registry imports every module here the first time it is asked for a format, so a
new format needs no line anywhere else.
"""
