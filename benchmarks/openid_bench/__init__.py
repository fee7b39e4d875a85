"""The benchmarks of openid-plugins, as a package: ``run.py`` and ``bench_sql_stores.py`` in
this folder's parent are thin entry points into it.

- ``cli``: ``run.py``'s command line and main loop;
- ``context``: one run's shared state (the OP, the temp directory, the database servers,
  what must be torn down) and its printed lines;
- ``fixtures``: helpers both entry points share (timing loops, machine facts, database URLs
  and raw connections, assertions signed up front);
- ``op``: python3-openid's OP with the benchmarks' extra routes, in a child process;
- ``sections``: one module per ``--only`` name;
- ``report``: issue #7's targets and the Markdown report;
- ``sql_stores``: the SQL store's rates per dialect, next to each database's raw rate.
"""
