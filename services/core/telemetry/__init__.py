"""How the processes report on themselves: JSON logs (``logs``), the api's buffered
access log (``access_log``), Prometheus plumbing shared by every process
(``prometheus``) and its per-process buffer (``metric_batch``), database pool metrics
(``pool_metrics``) and the ``Server-Timing`` header (``server_timing``).

Metric *definitions* live with the code they measure; labels stay bounded (route
templates, status classes, fixed enums), never raw paths or ids."""
