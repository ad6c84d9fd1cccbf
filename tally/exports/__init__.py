"""CSV exports: the datasets, their CSV files, and the schedules that write them once per period."""
