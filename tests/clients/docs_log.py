#!/usr/bin/python3
"""docs_log.py - prints a document as edgews stored it in SQLite (the docs and doc_ops
tables of DIR/edgews.db, see core/hub/store.h), for the collab specs to replay.

  /usr/bin/python3 docs_log.py DIR DOC
  -> {"exists": true, "rev": 12, "snapshot_rev": 10, "snapshot": "...",
      "ops": [[rev, client, seq, operation], ...]}   (operation decoded from its JSON)

Opens the database read-only; works while the server runs (WAL) or after it stopped.
"""
import json
import sqlite3
import sys


def main():
    path, doc = sys.argv[1] + "/edgews.db", sys.argv[2]
    db = sqlite3.connect("file:" + path + "?mode=ro", uri=True)
    row = db.execute("SELECT id, rev, snapshot_rev, snapshot FROM docs WHERE name = ?", (doc,)).fetchone()
    if row is None:
        print(json.dumps({"exists": False}))
        return
    ops = [[r, c, s, json.loads(bytes(o).decode("utf-8"))] for r, c, s, o in db.execute(
        "SELECT rev, client, seq, op FROM doc_ops WHERE doc_id = ? ORDER BY rev", (row[0],))]
    print(json.dumps({"exists": True, "rev": row[1], "snapshot_rev": row[2],
                      "snapshot": bytes(row[3]).decode("utf-8"), "ops": ops}, ensure_ascii=False))


main()
