// End-to-end test against a real auditexport gateway. It needs
//   AUDITEXPORT_URL       the REST gateway, e.g. http://127.0.0.1:8080
//   AUDITEXPORT_API_KEY   an ADMIN API key
//   AUDITEXPORT_DATA_DIR  the server's --data-dir (LOCAL exports go under <dir>/exports/<org id>)
// and is skipped without them, unless AUDITEXPORT_TS_E2E_REQUIRED=1 (set by
// integration_test/tsclient_test.go), which turns a missing variable into a failure.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gunzipSync } from "node:zlib";
import {
  AuditExportError,
  createAuditExportClient,
  GrpcCode,
  isTerminalPhase,
  sendNow,
  unwrap,
  watchExportRun,
  type ExportProgress,
} from "../src/index.js";

const url = process.env["AUDITEXPORT_URL"];
const apiKey = process.env["AUDITEXPORT_API_KEY"];
const dataDir = process.env["AUDITEXPORT_DATA_DIR"];
const required = process.env["AUDITEXPORT_TS_E2E_REQUIRED"] === "1";
const missing = !url || !apiKey || !dataDir;
if (missing && required) {
  throw new Error("AUDITEXPORT_URL, AUDITEXPORT_API_KEY and AUDITEXPORT_DATA_DIR must be set");
}

test(
  "e2e: integration, workbook and schedule through the gateway, then Send now to SUCCEEDED",
  { skip: missing ? "AUDITEXPORT_URL, AUDITEXPORT_API_KEY, AUDITEXPORT_DATA_DIR not set" : false, timeout: 120_000 },
  async () => {
    const client = createAuditExportClient({ baseUrl: url!, apiKey: apiKey! });
    const suffix = randomBytes(4).toString("hex");
    // Each organization's LOCAL destinations lie under <local-root>/<org id>/.
    const { user } = unwrap(await client.GET("/v1/users/me"));
    const orgId = user?.organizationId ?? "";
    assert.match(orgId, /^org_/);
    // A trailing slash: a LOCAL destination is a directory.
    const destination = pathToFileURL(resolve(dataDir!, "exports", orgId, "ts")).href + "/";

    // A LOCAL storage integration under the organization's export directory.
    const { storageIntegration } = unwrap(
      await client.POST("/v1/storageIntegrations", {
        body: { name: `ts_local_${suffix}`, provider: "PROVIDER_LOCAL", destination },
      }),
    );
    assert.match(storageIntegration?.id ?? "", /^int_/);
    assert.equal(storageIntegration?.provider, "PROVIDER_LOCAL");

    // Explore AUDIT_LOGS and save the exploration as a workbook.
    const explored = unwrap(
      await client.POST("/v1/connections/{connectionId}/tables/{table}:explore", {
        params: { path: { connectionId: "con_audit_logs", table: "AUDIT_LOGS" } },
        body: {},
      }),
    );
    const workbookId = explored.workbook?.id;
    const elementId = explored.workbook?.elements?.[0]?.id;
    assert.ok(workbookId && elementId, `explore answered ${JSON.stringify(explored)}`);
    const { workbook } = unwrap(
      await client.POST("/v1/workbooks/{id}:saveAs", {
        params: { path: { id: workbookId } },
        body: { name: `TS client ${suffix}`, folder: "ts" },
      }),
    );
    assert.equal(workbook?.saved, true);

    // A daily gzip-compressed CSV export into the integration's directory.
    const { schedule } = unwrap(
      await client.POST("/v1/workbooks/{workbookId}/schedules", {
        params: { path: { workbookId } },
        body: {
          elementId,
          name: `ts daily ${suffix}`,
          destination: {
            cloudStorage: {
              storageIntegrationName: `ts_local_${suffix}`,
              uri: `${destination}audit-${suffix}-{date}.csv.gz`,
            },
          },
          format: "FORMAT_CSV",
          compression: "COMPRESSION_GZIP",
          cron: "0 6 * * *",
          timeZone: "Europe/Berlin",
        },
      }),
    );
    const scheduleId = schedule?.id ?? "";
    assert.match(scheduleId, /^sch_/, `create schedule answered ${JSON.stringify(schedule)}`);
    assert.equal(schedule?.state, "SCHEDULE_STATE_ACTIVE");

    // Send now, following the progress stream.
    const seen: ExportProgress[] = [];
    const final = await sendNow(client, scheduleId, { onProgress: (p) => seen.push(p) });
    assert.equal(final.phase, "EXPORT_PHASE_SUCCEEDED", `final progress ${JSON.stringify(final)}`);
    assert.ok(seen.length >= 1);
    assert.equal(seen.filter((p) => isTerminalPhase(p.phase)).length, 1, "exactly one terminal message");
    assert.ok(isTerminalPhase(seen[seen.length - 1]?.phase), "the terminal message is the last");
    let prev = -1n;
    for (const p of seen) {
      assert.equal(p.runId, final.runId);
      const rows = BigInt(p.rowsExported ?? "0");
      assert.ok(rows >= prev, `rows went backwards: ${prev} then ${rows}`);
      prev = rows;
    }
    const rows = BigInt(final.rowsExported ?? "0");
    assert.ok(rows > 0n, "the audit log has rows (every call above is one)");

    // The file is on disk, gzip-compressed CSV with a header row.
    const objectUri = final.objectUri ?? "";
    assert.ok(objectUri.startsWith(destination) && objectUri.endsWith(".csv.gz"), `objectUri ${objectUri}`);
    const path = fileURLToPath(objectUri);
    assert.ok(existsSync(path), `${path} does not exist`);
    assert.ok(statSync(path).size > 0);
    const csv = gunzipSync(readFileSync(path)).toString("utf8");
    assert.ok(csv.split("\n").length >= 2, "a header row and data rows");

    // Reattaching to the finished run answers its terminal message.
    const watched = await watchExportRun(client, final.runId!);
    assert.equal(watched.phase, "EXPORT_PHASE_SUCCEEDED");
    assert.equal(watched.rowsExported, final.rowsExported);

    // The run history has it.
    const { runs } = unwrap(
      await client.GET("/v1/schedules/{scheduleId}/runs", { params: { path: { scheduleId } } }),
    );
    assert.ok(runs?.some((r) => r.id === final.runId && r.state === "RUN_STATE_SUCCEEDED"));

    // Bad input: a field violation naming the field.
    const bad = await client.PATCH("/v1/schedules/{schedule.id}", {
      params: { path: { "schedule.id": scheduleId } },
      body: { cron: "0 25 * * *" },
    });
    assert.throws(
      () => unwrap(bad),
      (err: unknown) => {
        assert.ok(err instanceof AuditExportError, `got ${String(err)}`);
        assert.equal(err.code, GrpcCode.INVALID_ARGUMENT);
        assert.equal(err.codeName, "INVALID_ARGUMENT");
        assert.equal(err.httpStatus, 400);
        assert.equal(err.reason, "INVALID_ARGUMENT");
        assert.ok(err.fieldViolation("schedule.cron"), `violations ${JSON.stringify(err.fieldViolations)}`);
        return true;
      },
    );

    // An explicit update mask: only the named field changes, the rest of the
    // body (here an invalid cron) is ignored.
    const { schedule: renamed } = unwrap(
      await client.PATCH("/v1/schedules/{schedule.id}", {
        params: { path: { "schedule.id": scheduleId }, query: { updateMask: "name" } },
        body: { name: `ts renamed ${suffix}`, cron: "0 25 * * *" },
      }),
    );
    assert.equal(renamed?.name, `ts renamed ${suffix}`);
    assert.equal(renamed?.cron, "0 6 * * *");

    // Send now on an unknown schedule: the stream's HTTP error is a typed error too.
    await assert.rejects(sendNow(client, "sch_doesnotexist"), (err: unknown) => {
      assert.ok(err instanceof AuditExportError, `got ${String(err)}`);
      assert.equal(err.code, GrpcCode.NOT_FOUND);
      assert.equal(err.httpStatus, 404);
      // The id the server logged the call under (its X-Request-Id answer header).
      assert.match(err.requestId ?? "", /^req_/);
      return true;
    });

    // A wrong key is UNAUTHENTICATED; a request id of the caller's choosing comes back.
    const stranger = createAuditExportClient({ baseUrl: url!, apiKey: "aek_00000000_00000000000000000000000000000000" });
    await assert.rejects(
      (async () => unwrap(await stranger.GET("/v1/users/me", { headers: { "X-Request-Id": "ts-e2e-1" } })))(),
      (err: unknown) => {
        assert.ok(err instanceof AuditExportError, `got ${String(err)}`);
        assert.equal(err.code, GrpcCode.UNAUTHENTICATED);
        assert.equal(err.requestId, "ts-e2e-1");
        return true;
      },
    );
  },
);
