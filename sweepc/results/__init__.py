"""Results: a Plan, the store and the job folders in, pandas DataFrames out.

    table.py   one row per job: parameters, bookkeeping columns, results files
"""
