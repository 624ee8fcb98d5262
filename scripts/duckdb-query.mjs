#!/usr/bin/env node
// Runs one SQL statement (or several; the last one's result is printed) in an
// in-memory DuckDB and prints {"columns":[...],"types":[...],"rows":[{...}]}
// as JSON on stdout. Used by internal/testenv.DuckDBQuery as an independent
// reader of exported CSV / JSON / Parquet files.
//
//   node scripts/duckdb-query.mjs "SELECT * FROM read_csv('/tmp/x.csv')"
//   echo "SELECT 1" | node scripts/duckdb-query.mjs
//
// @duckdb/node-api comes from .tools/node (scripts/install-test-tools.sh).
// Value mapping: BIGINT/HUGEINT etc. -> JSON number when it is a safe integer,
// else a string; DATE/TIME/TIMESTAMP/DECIMAL/UUID/INTERVAL -> DuckDB's string
// form; BLOB -> DuckDB's escaped string form; LIST/STRUCT/MAP -> JSON
// arrays/objects of the same mapping.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const toolsNode = path.join(root, '.tools', 'node');
const require = createRequire(path.join(toolsNode, 'package.json'));
const {
  DuckDBInstance,
  DuckDBListValue,
  DuckDBArrayValue,
  DuckDBStructValue,
  DuckDBMapValue,
  DuckDBUnionValue,
} = require('@duckdb/node-api');

let sql = process.argv[2];
if (sql === undefined) sql = fs.readFileSync(0, 'utf8');
if (!sql.trim()) {
  console.error('usage: duckdb-query.mjs "<SQL>"');
  process.exit(2);
}

function plain(v) {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'bigint':
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    case 'number':
      return Number.isFinite(v) ? v : String(v);
    case 'string':
    case 'boolean':
      return v;
    case 'object':
      if (Array.isArray(v)) return v.map(plain);
      if (v instanceof DuckDBListValue || v instanceof DuckDBArrayValue) return v.items.map(plain);
      if (v instanceof DuckDBStructValue) {
        const o = {};
        for (const [k, x] of Object.entries(v.entries)) o[k] = plain(x);
        return o;
      }
      if (v instanceof DuckDBMapValue) {
        const o = {};
        for (const { key, value } of v.entries) o[String(plain(key))] = plain(value);
        return o;
      }
      if (v instanceof DuckDBUnionValue) return plain(v.value);
      // The other DuckDB value classes (date, time, timestamp, decimal, uuid,
      // interval, blob, ...) print DuckDB's own text form.
      return String(v);
    default:
      return String(v);
  }
}

try {
  const instance = await DuckDBInstance.create(':memory:', {
    // Never reach for the network: parquet and json are built in.
    autoinstall_known_extensions: 'false',
  });
  const conn = await instance.connect();
  const reader = await conn.runAndReadAll(sql);
  const columns = reader.columnNames();
  const types = reader.columnTypes().map((t) => t.toString());
  const rows = reader.getRows().map((r) => {
    const o = {};
    columns.forEach((c, i) => {
      o[c] = plain(r[i]);
    });
    return o;
  });
  process.stdout.write(JSON.stringify({ columns, types, rows }) + '\n');
} catch (e) {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
}
