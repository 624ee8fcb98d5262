package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DuckDBResult is what scripts/duckdb-query.mjs prints.
type DuckDBResult struct {
	Columns []string         // in result order (a row map loses the order)
	Types   []string         // DuckDB type names, e.g. "BIGINT", "TIMESTAMP WITH TIME ZONE"
	Rows    []map[string]any // column name -> value; see DuckDBQuery for the value mapping
}

// DuckDBScript is the path of the node script DuckDBQuery runs; usable
// directly as `node <script> "<SQL>"`.
func DuckDBScript(t testing.TB) string {
	t.Helper()
	Require(t, ToolDuckDB)
	return filepath.Join(Root(t), "scripts", "duckdb-query.mjs")
}

// DuckDBQuery runs sql in a fresh in-memory DuckDB (through Node and
// @duckdb/node-api) and returns the rows of the last statement. DuckDB reads
// CSV (read_csv), JSON (read_json) and Parquet (read_parquet, or a quoted
// '*.parquet' path) files, so it is an independent check of exported files.
//
// Values: integers come back as float64 when they fit in 2^53 and as strings
// otherwise; DOUBLE as float64 (NaN/Inf as strings); VARCHAR and BOOLEAN as
// themselves; DATE, TIME, TIMESTAMP[TZ], DECIMAL, UUID, INTERVAL and BLOB as
// DuckDB's text form (e.g. "2024-01-02 03:04:05+00", "1.25"); LIST as []any;
// STRUCT and MAP as map[string]any. Duplicate column names collapse in a row
// map: alias them.
func DuckDBQuery(t testing.TB, sql string) []map[string]any {
	t.Helper()
	return DuckDBQueryResult(t, sql).Rows
}

// DuckDBQueryResult is DuckDBQuery with column names and types.
func DuckDBQueryResult(t testing.TB, sql string) DuckDBResult {
	t.Helper()
	script := DuckDBScript(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Stdin = bytes.NewReader([]byte(sql)) // stdin: no argv length limit, no quoting
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: duckdb query failed: %v\nSQL: %s\n%s", err, sql, stderr.String())
	}
	var res DuckDBResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("testenv: duckdb output: %v\n%s", err, stdout.String())
	}
	if res.Rows == nil {
		res.Rows = []map[string]any{}
	}
	return res
}
