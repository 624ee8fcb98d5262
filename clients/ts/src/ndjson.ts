import { AuditExportError, GrpcCode } from "./errors.js";

/**
 * ndjsonLines yields the lines of a newline-delimited stream, without their "\n" (and
 * without a trailing "\r"). Chunks may split a line, or a UTF-8 character, anywhere; a
 * last line without a final newline is yielded too; empty lines are skipped. The reader
 * is released (and the stream cancelled) if the consumer stops early.
 */
export async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buf = "";
  let done = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        buf += decoder.decode();
        break;
      }
      buf += decoder.decode(r.value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = trimCR(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.trim() !== "") yield line;
      }
    }
    const last = trimCR(buf);
    if (last.trim() !== "") yield last;
  } finally {
    if (!done) {
      // The consumer stopped early (break, throw, abort): stop the transfer.
      await reader.cancel().catch(() => undefined);
    }
    reader.releaseLock();
  }
}

function trimCR(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/**
 * readNdjson parses each line of an NDJSON stream as JSON. A line that is not JSON
 * rejects with an AuditExportError (code DATA_LOSS) naming the line.
 */
export async function* readNdjson<T = unknown>(body: ReadableStream<Uint8Array>): AsyncGenerator<T, void, undefined> {
  for await (const line of ndjsonLines(body)) {
    let value: T;
    try {
      value = JSON.parse(line) as T;
    } catch (err) {
      throw new AuditExportError(GrpcCode.DATA_LOSS, `malformed stream line: ${line.slice(0, 200)}`, { cause: err });
    }
    yield value;
  }
}
