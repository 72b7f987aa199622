#!/usr/bin/env python3
"""Reads an embedding-set Parquet file with pyarrow and pandas, as a user of the Python tools
would, and prints what it found as JSON. Exit 3 when pyarrow or pandas is not installed.

    python3 scripts/check-parquet.py embeddings/.../SIGNATURE.parquet
"""
import json
import sys

try:
    import pandas
    import pyarrow.parquet as pq
except ImportError as error:  # pragma: no cover - depends on the machine
    print(f"missing: {error}", file=sys.stderr)
    sys.exit(3)

path = sys.argv[1]
table = pq.read_table(path)
frame = pandas.read_parquet(path)
file_metadata = pq.ParquetFile(path).metadata.metadata or {}
metadata = {key.decode(): value.decode() for key, value in file_metadata.items() if key != b"ARROW:schema"}
embedding = table.column("embedding")
first = embedding[0].as_py() if len(embedding) else []
print(json.dumps({
    "rows": table.num_rows,
    "columns": table.column_names,
    "embedding_dim": len(first),
    "metadata": metadata,
    "pandas_rows": len(frame),
    "first_start_seconds": float(frame["start_seconds"].iloc[0]) if len(frame) else None,
    # Absent in sets written before the column existed; null where the recording's start is unknown.
    "start_time_utc_dtype": str(frame["start_time_utc"].dtype) if "start_time_utc" in frame else None,
    "start_time_utc": [None if pandas.isna(value) else value.isoformat() for value in frame["start_time_utc"]]
    if "start_time_utc" in frame else None,
}))
