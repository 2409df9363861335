"""An example tokenflow plugin package.

* :mod:`tokenflow_example.sqlite_store`: the ``sqlite`` token store (one SQLite file; a lock file
  per key serialises refreshes across processes);
* :mod:`tokenflow_example.dotenv_source`: the ``dotenv`` secret source (``{dotenv: {path, key}}``);
* :mod:`tokenflow_example.jsonl_events`: an event observer appending JSON lines to the file named
  by ``$TOKENFLOW_EXAMPLE_EVENTS``;
* :mod:`tokenflow_example.plugin`: the hook implementations that register them (the module the
  ``tokenflow`` entry point names).
"""

__version__ = "0.1.0"
