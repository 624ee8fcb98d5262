// Unit tests of the NDJSON reader, the progress follower and the error type, with no
// server: streams and fetch are faked.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AuditExportError,
  createAuditExportClient,
  followProgress,
  GrpcCode,
  ndjsonLines,
  readNdjson,
  sendNow,
  watchExportRun,
  type ExportProgress,
} from "../src/index.js";

const enc = new TextEncoder();

/** A stream delivering exactly these chunks (strings are UTF-8 encoded, bytes as given). */
function streamOf(chunks: (string | Uint8Array)[], onCancel?: () => void): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const c = chunks[i++];
      if (c === undefined) controller.close();
      else controller.enqueue(typeof c === "string" ? enc.encode(c) : c);
    },
    cancel() {
      onCancel?.();
    },
  });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

/** Splits s into chunks of n bytes, cutting through lines and multi-byte characters. */
function byteChunks(s: string, n: number): Uint8Array[] {
  const b = enc.encode(s);
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.length; i += n) out.push(b.subarray(i, i + n));
  return out;
}

function progressLine(phase: string, rows: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ result: { progress: { runId: "run_1", phase, rowsExported: String(rows), ...extra } } });
}

test("ndjson: a line split across chunks is joined", async () => {
  const lines = await collect(ndjsonLines(streamOf(['{"a":', "1}\n", '{"b"', ":2}\n"])));
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}']);
});

test("ndjson: several lines in one chunk, and a final line without newline", async () => {
  const lines = await collect(ndjsonLines(streamOf(['{"a":1}\n{"b":2}\n{"c":', '3}\n{"d":4}'])));
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}', '{"d":4}']);
});

test("ndjson: chunks of every size, UTF-8 characters split between chunks, CRLF and blank lines", async () => {
  const text = '{"name":"Zoë € 🚀"}\r\n\n{"name":"ok"}\n\n';
  for (let n = 1; n <= text.length; n++) {
    const values = await collect(readNdjson<{ name: string }>(streamOf(byteChunks(text, n))));
    assert.deepEqual(
      values.map((v) => v.name),
      ["Zoë € 🚀", "ok"],
      `chunk size ${n}`,
    );
  }
});

test("ndjson: an empty stream yields nothing", async () => {
  assert.deepEqual(await collect(ndjsonLines(streamOf([]))), []);
  assert.deepEqual(await collect(ndjsonLines(streamOf(["\n", "\n"]))), []);
});

test("ndjson: a malformed line rejects with DATA_LOSS", async () => {
  await assert.rejects(collect(readNdjson(streamOf(['{"a":1}\n', "not json\n"]))), (err: unknown) => {
    assert.ok(err instanceof AuditExportError);
    assert.equal(err.code, GrpcCode.DATA_LOSS);
    assert.match(err.message, /not json/);
    return true;
  });
});

test("ndjson: stopping early cancels the stream", async () => {
  let canceled = false;
  const body = streamOf(['{"a":1}\n{"b":2}\n', '{"c":3}\n'], () => {
    canceled = true;
  });
  for await (const line of ndjsonLines(body)) {
    assert.equal(line, '{"a":1}');
    break;
  }
  assert.ok(canceled, "the stream was not cancelled");
});

test("followProgress: reports every message and resolves to the terminal one", async () => {
  const text =
    [
      progressLine("EXPORT_PHASE_QUEUED", 0),
      progressLine("EXPORT_PHASE_UPLOADING", 10),
      progressLine("EXPORT_PHASE_SUCCEEDED", 25, { objectUri: "file:///x.csv" }),
    ].join("\n") + "\n";
  const seen: ExportProgress[] = [];
  const final = await followProgress(streamOf(byteChunks(text, 7)), { onProgress: (p) => seen.push(p) });
  assert.deepEqual(
    seen.map((p) => p.phase),
    ["EXPORT_PHASE_QUEUED", "EXPORT_PHASE_UPLOADING", "EXPORT_PHASE_SUCCEEDED"],
  );
  assert.equal(final.phase, "EXPORT_PHASE_SUCCEEDED");
  assert.equal(final.rowsExported, "25");
  assert.equal(final.objectUri, "file:///x.csv");
});

test("followProgress: a FAILED run resolves (it is a result, not a call error)", async () => {
  const final = await followProgress(
    streamOf([
      progressLine("EXPORT_PHASE_FAILED", 0, { error: { code: "PROVIDER_ACCESS_DENIED", message: "denied" } }) + "\n",
    ]),
  );
  assert.equal(final.phase, "EXPORT_PHASE_FAILED");
  assert.equal(final.error?.code, "PROVIDER_ACCESS_DENIED");
});

test("followProgress: an error line rejects with its Status", async () => {
  const errorLine = JSON.stringify({
    error: {
      code: 9,
      message: "schedule is paused",
      details: [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SCHEDULE_PAUSED", domain: "auditexport", metadata: { id: "sch_1" } },
        {
          "@type": "type.googleapis.com/google.rpc.BadRequest",
          fieldViolations: [{ field: "schedule.cron", description: "bad", reason: "", localizedMessage: null }],
        },
        { "@type": "type.googleapis.com/google.rpc.RequestInfo", requestId: "req_1" },
      ],
    },
  });
  const seen: ExportProgress[] = [];
  await assert.rejects(
    followProgress(streamOf([progressLine("EXPORT_PHASE_QUEUED", 0) + "\n" + errorLine.slice(0, 20), errorLine.slice(20) + "\n"]), {
      onProgress: (p) => seen.push(p),
    }),
    (err: unknown) => {
      assert.ok(err instanceof AuditExportError);
      assert.equal(err.code, GrpcCode.FAILED_PRECONDITION);
      assert.equal(err.codeName, "FAILED_PRECONDITION");
      assert.equal(err.message, "schedule is paused");
      assert.equal(err.reason, "SCHEDULE_PAUSED");
      assert.deepEqual(err.errorInfo, { reason: "SCHEDULE_PAUSED", domain: "auditexport", metadata: { id: "sch_1" } });
      assert.deepEqual(err.fieldViolations, [{ field: "schedule.cron", description: "bad" }]);
      assert.equal(err.fieldViolation("schedule.cron")?.description, "bad");
      assert.equal(err.requestId, "req_1");
      assert.equal(err.httpStatus, undefined);
      assert.equal(err.details.length, 3);
      return true;
    },
  );
  assert.equal(seen.length, 1);
});

test("followProgress: a stream that ends without a terminal message rejects with UNAVAILABLE", async () => {
  await assert.rejects(followProgress(streamOf([progressLine("EXPORT_PHASE_UPLOADING", 5) + "\n"])), (err: unknown) => {
    assert.ok(err instanceof AuditExportError);
    assert.equal(err.code, GrpcCode.UNAVAILABLE);
    assert.match(err.message, /run_1/);
    return true;
  });
});

test("AuditExportError.fromResponse: plain Status, streaming {error}, and non-JSON bodies", () => {
  const status = { code: 5, message: "nope", details: [] };
  let e = AuditExportError.fromResponse(status, new Response(null, { status: 404 }));
  assert.equal(e.code, GrpcCode.NOT_FOUND);
  assert.equal(e.httpStatus, 404);
  e = AuditExportError.fromResponse({ error: status }, new Response(null, { status: 404 }));
  assert.equal(e.code, GrpcCode.NOT_FOUND);
  assert.equal(e.message, "nope");
  e = AuditExportError.fromResponse("<html>bad gateway</html>", new Response(null, { status: 503, statusText: "Service Unavailable" }));
  assert.equal(e.code, GrpcCode.UNAVAILABLE);
  assert.match(e.message, /503.*bad gateway/);
  assert.deepEqual(e.fieldViolations, []);
  assert.equal(e.reason, undefined);
  assert.equal(e.requestId, undefined);
});

test("AuditExportError.fromResponse: requestId from the X-Request-Id header (a RequestInfo detail wins)", () => {
  const headers = { "X-Request-Id": "req_hdr" };
  let e = AuditExportError.fromResponse({ code: 5, message: "nope", details: [] }, new Response(null, { status: 404, headers }));
  assert.equal(e.requestId, "req_hdr");
  e = AuditExportError.fromResponse({ error: { code: 5, message: "nope" } }, new Response(null, { status: 404, headers }));
  assert.equal(e.requestId, "req_hdr");
  e = AuditExportError.fromResponse("<html>bad gateway</html>", new Response(null, { status: 502, headers }));
  assert.equal(e.requestId, "req_hdr");
  const withInfo = { code: 5, message: "nope", details: [{ "@type": "type.googleapis.com/google.rpc.RequestInfo", requestId: "req_detail" }] };
  e = AuditExportError.fromResponse(withInfo, new Response(null, { status: 404, headers }));
  assert.equal(e.requestId, "req_detail");
});

test("sendNow: an error line in the stream carries the answer's X-Request-Id", async () => {
  const errorLine = JSON.stringify({ error: { code: 13, message: "internal error (request req_stream)" } });
  const client = createAuditExportClient({
    baseUrl: "http://gateway.invalid",
    apiKey: "k",
    fetch: async () =>
      new Response(streamOf([progressLine("EXPORT_PHASE_QUEUED", 0) + "\n" + errorLine + "\n"]), {
        status: 200,
        headers: { "content-type": "application/json", "X-Request-Id": "req_stream" },
      }),
  });
  await assert.rejects(sendNow(client, "sch_1"), (err: unknown) => {
    assert.ok(err instanceof AuditExportError);
    assert.equal(err.code, GrpcCode.INTERNAL);
    assert.equal(err.requestId, "req_stream");
    return true;
  });
});

/** A fetch that records requests and answers with the given status and body chunks. */
function fakeFetch(status: number, chunks: (string | Uint8Array)[], seen: Request[]): (input: Request) => Promise<Response> {
  return async (input: Request) => {
    seen.push(input);
    return new Response(streamOf(chunks), { status, headers: { "content-type": "application/json" } });
  };
}

test("sendNow: sends the key, POSTs to :sendNow and follows the stream", async () => {
  const seen: Request[] = [];
  const body = progressLine("EXPORT_PHASE_QUEUED", 0) + "\n" + progressLine("EXPORT_PHASE_SUCCEEDED", 3);
  const client = createAuditExportClient({
    baseUrl: "http://gateway.invalid/",
    apiKey: "aek_test",
    fetch: fakeFetch(200, byteChunks(body, 5), seen),
  });
  const final = await sendNow(client, "sch_1");
  assert.equal(final.phase, "EXPORT_PHASE_SUCCEEDED");
  assert.equal(seen.length, 1);
  const req = seen[0]!;
  assert.equal(req.method, "POST");
  assert.equal(req.url, "http://gateway.invalid/v1/schedules/sch_1:sendNow");
  assert.equal(req.headers.get("authorization"), "Bearer aek_test");
  assert.equal(await req.text(), "{}");
});

test("sendNow / watchExportRun: an HTTP error answer rejects with its Status", async () => {
  const seen: Request[] = [];
  const notFound = JSON.stringify({
    error: { code: 5, message: 'schedule "sch_x" not found', details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "NOT_FOUND" }] },
  });
  const opts = { baseUrl: "http://gateway.invalid", apiKey: () => "aek_fn", fetch: fakeFetch(404, [notFound], seen) };
  for (const call of [() => sendNow(opts, "sch_x"), () => watchExportRun(opts, "run_x")]) {
    await assert.rejects(call(), (err: unknown) => {
      assert.ok(err instanceof AuditExportError);
      assert.equal(err.code, GrpcCode.NOT_FOUND);
      assert.equal(err.httpStatus, 404);
      assert.equal(err.reason, "NOT_FOUND");
      return true;
    });
  }
  assert.equal(seen[1]?.method, "GET");
  assert.equal(seen[1]?.url, "http://gateway.invalid/v1/exportRuns/run_x:watch");
  assert.equal(seen[1]?.headers.get("authorization"), "Bearer aek_fn");
});

test("sendNow: a network failure rejects with UNAVAILABLE; an abort stays an AbortError", async () => {
  const failing = createAuditExportClient({
    baseUrl: "http://gateway.invalid",
    apiKey: "k",
    fetch: async () => {
      throw new TypeError("fetch failed");
    },
  });
  await assert.rejects(sendNow(failing, "sch_1"), (err: unknown) => {
    assert.ok(err instanceof AuditExportError);
    assert.equal(err.code, GrpcCode.UNAVAILABLE);
    assert.ok(err.cause instanceof TypeError);
    return true;
  });

  const ac = new AbortController();
  const hanging = createAuditExportClient({
    baseUrl: "http://gateway.invalid",
    apiKey: "k",
    fetch: async (req: Request) =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(enc.encode(progressLine("EXPORT_PHASE_QUEUED", 0) + "\n"));
            req.signal.addEventListener("abort", () => controller.error(req.signal.reason));
          },
        }),
        { status: 200 },
      ),
  });
  const p = sendNow(hanging, "sch_1", { signal: ac.signal, onProgress: () => ac.abort() });
  await assert.rejects(p, (err: unknown) => {
    assert.ok(!(err instanceof AuditExportError), `got ${String(err)}`);
    assert.equal((err as Error).name, "AbortError");
    return true;
  });
});
