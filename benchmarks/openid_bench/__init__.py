"""The benchmarks of openid-plugins, as a package: ``run.py`` in this folder's parent is a
thin entry point into it.

- ``cli``: ``run.py``'s command line and main loop;
- ``context``: one run's shared state (the OP, the temp directory, the database servers,
  what must be torn down) and its printed lines;
- ``fixtures``: helpers the sections share (timing loops, machine facts, database URLs and
  raw connections, assertions signed up front);
- ``op``: python3-openid's OP with the benchmarks' extra routes, in a child process;
- ``sections``: one module per ``--only`` name;
- ``report``: issue #7's targets and the Markdown report.
"""
