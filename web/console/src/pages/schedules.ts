import { api, unwrap, isAdmin } from "../api";
import { sendNow, watchExportRun, isTerminalPhase, type ExportProgress, type Schedule, type Schemas } from "@auditexport/client";
import { announce, navigate } from "../nav";
import { h, clear, field, select, showErrors, clearErrors, table, button, busy, confirmDialog, alertBox, fmtTime, fmtBytes, fmtInt, enumLabel, badge, errorMessage } from "../ui";

type Run = Schemas["v1ExportRun"];

function stateBadge(s: Schedule): HTMLElement {
  return s.state === "SCHEDULE_STATE_PAUSED" ? badge("Paused", "warn") : badge(enumLabel(s.state, "SCHEDULE_STATE_"), "ok");
}
function runBadge(state: string | undefined): HTMLElement {
  const kind = state === "RUN_STATE_SUCCEEDED" ? "ok" : state === "RUN_STATE_FAILED" ? "bad" : "warn";
  return badge(enumLabel(state, "RUN_STATE_"), kind);
}

/** The schedules of a workbook (or all the caller may see) as a table. */
export async function schedulesTable(box: HTMLElement, workbookId?: string): Promise<void> {
  try {
    const query: { pageSize: number; workbookId?: string } = { pageSize: 100 };
    if (workbookId) query.workbookId = workbookId;
    const { schedules = [] } = unwrap(await api.GET("/v1/schedules", { params: { query } }));
    clear(
      box,
      table(
        workbookId ? "Schedules of this workbook" : "Schedules",
        ["Name", "State", "Pause reason", "Cron", "Next run", "Last run", "Owner"],
        schedules.map((s) => [
          h("a", { href: `/schedules/${encodeURIComponent(s.id ?? "")}`, "data-link": true }, s.name || s.id || ""),
          stateBadge(s),
          s.state === "SCHEDULE_STATE_PAUSED" ? enumLabel(s.pauseReason, "PAUSE_REASON_") : "—",
          h("code", null, `${s.cron ?? ""} (${s.timeZone ?? ""})`),
          fmtTime(s.nextRunTime),
          s.lastRun?.runId ? h("span", null, runBadge(s.lastRun.state), " ", fmtTime(s.lastRun.finishTime)) : "—",
          s.owner ?? "",
        ]),
        { empty: workbookId ? "No schedules on this workbook yet." : "No schedules yet. Open a saved workbook to add one." },
      ),
    );
  } catch (err) {
    clear(box, alertBox(err));
  }
}

export async function schedulesPage(main: HTMLElement): Promise<void> {
  const box = h("div");
  clear(
    main,
    h("h1", null, isAdmin() ? "All schedules" : "Schedules"),
    h("p", null, isAdmin() ? "Every scheduled export of the organization." : "The scheduled exports you can see. Add one from a saved workbook."),
    box,
  );
  await schedulesTable(box);
}

const ACTIVE_RUN = (id: string) => `auditexport.activeRun.${id}`;

/** /schedules/:id — details, pause/resume, Send now with live progress, run history. */
export async function schedulePage(main: HTMLElement, [id]: string[]): Promise<void> {
  const sid = id ?? "";
  let { schedule: s } = unwrap(await api.GET("/v1/schedules/{id}", { params: { path: { id: sid } } }));
  if (!s) throw new Error("no schedule");
  const details = h("div");
  const runsBox = h("div");
  const progressBox = h("section", { class: "card progress-card", "aria-labelledby": "progress-h", hidden: true });
  const sendBtn = h("button", { type: "button", class: "primary" }, "Send now");
  const pauseBtn = h("button", { type: "button" });
  const msg = h("div", { role: "status", "aria-live": "polite", class: "status" });

  function renderDetails(): void {
    if (!s) return;
    pauseBtn.textContent = s.state === "SCHEDULE_STATE_PAUSED" ? "Resume" : "Pause";
    const d = s.destination?.cloudStorage;
    const rows: [string, unknown][] = [
      ["State", stateBadge(s)],
      ["Pause reason", s.state === "SCHEDULE_STATE_PAUSED" ? enumLabel(s.pauseReason, "PAUSE_REASON_") : "—"],
      ["Cron", `${s.cron} (${s.timeZone})`],
      ["Next run", fmtTime(s.nextRunTime)],
      ["Last run", s.lastRun?.runId ? `${enumLabel(s.lastRun.state, "RUN_STATE_")} ${fmtTime(s.lastRun.finishTime)}` : "—"],
      ["Integration", d?.storageIntegrationName ?? ""],
      ["Destination URI", d?.uri ?? ""],
      ["Format", `${enumLabel(s.format, "FORMAT_")}, ${enumLabel(s.compression, "COMPRESSION_")}`],
      ["Mode", enumLabel(s.mode, "EXPORT_MODE_")],
      ["Send condition", enumLabel(s.sendCondition, "SEND_CONDITION_")],
      ["Catch-up", enumLabel(s.catchUp, "CATCH_UP_")],
      ["Notify", (s.notifyEmails ?? []).join(", ") || "—"],
      ["Owner", s.owner ?? ""],
      ["Consecutive failures", String(s.consecutiveFailures ?? 0)],
    ];
    clear(details, h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v as Node | string)])));
  }

  async function loadRuns(): Promise<Run[]> {
    try {
      const { runs = [] } = unwrap(await api.GET("/v1/schedules/{scheduleId}/runs", { params: { path: { scheduleId: sid }, query: { pageSize: 20 } } }));
      clear(
        runsBox,
        table(
          "Run history",
          ["Run", "Trigger", "State", "Rows", "Bytes", "Started", "Finished", "Object / error", "Actions"],
          runs.map((r) => [
            h("code", null, r.id ?? ""),
            enumLabel(r.trigger, "TRIGGER_"),
            runBadge(r.state),
            fmtInt(r.rows),
            fmtBytes(Number(r.bytes ?? 0)),
            fmtTime(r.startTime),
            fmtTime(r.finishTime),
            r.error?.code
              ? h("div", { class: "run-error" }, h("strong", null, r.error.code), " ", r.error.message ?? "", r.error.providerMessage ? h("div", { class: "provider-msg" }, `Provider: ${r.error.providerMessage}`) : null)
              : h("span", null, r.objectUri ? h("code", null, r.objectUri) : "", r.note ? h("div", { class: "hint" }, r.note) : null),
            r.state === "RUN_STATE_RUNNING" || r.state === "RUN_STATE_QUEUED" ? button("Cancel", () => void cancel(r.id ?? ""), { "aria-label": `Cancel run ${r.id}` }) : "",
          ]),
          { empty: "No runs yet." },
        ),
      );
      return runs;
    } catch (err) {
      clear(runsBox, alertBox(err));
      return [];
    }
  }

  async function cancel(runId: string): Promise<void> {
    try {
      unwrap(await api.POST("/v1/exportRuns/{id}:cancel", { params: { path: { id: runId } }, body: {} }));
      announce("Cancel requested.");
    } catch (err) {
      clear(msg, alertBox(err));
    }
    await loadRuns();
  }

  // --- progress -----------------------------------------------------------------------
  const bar = h("progress", { max: 100, value: 0, "aria-labelledby": "progress-h", "aria-describedby": "progress-text" });
  const pct = h("span", { class: "pct" }, "0%");
  const text = h("p", { id: "progress-text", class: "progress-text" });
  const cancelBtn = h("button", { type: "button" }, "Cancel run");
  let currentRun = "";
  let started = 0;
  let firstRows = -1;
  cancelBtn.addEventListener("click", () => void (currentRun && cancel(currentRun)));
  clear(progressBox, h("h2", { id: "progress-h" }, "Send now progress"), h("div", { class: "bar" }, bar, pct), text, h("div", { class: "actions" }, cancelBtn));

  function show(p: ExportProgress): void {
    progressBox.hidden = false;
    if (p.runId && p.runId !== currentRun) {
      currentRun = p.runId;
      sessionStorage.setItem(ACTIVE_RUN(sid), currentRun);
    }
    const rows = Number(p.rowsExported ?? 0);
    const total = Number(p.totalRows ?? 0);
    let percent = total > 0 ? Math.min(99, Math.floor((rows * 100) / total)) : 0;
    if (p.phase === "EXPORT_PHASE_SUCCEEDED") percent = 100;
    bar.value = percent;
    bar.setAttribute("aria-valuetext", `${percent}%`);
    pct.textContent = `${percent}%`;
    // ETA from the rate seen since this page attached (a reattached run started earlier).
    if (firstRows < 0) {
      firstRows = rows;
      started = Date.now();
    }
    const elapsed = (Date.now() - started) / 1000;
    let eta = "";
    if (!isTerminalPhase(p.phase) && total > 0 && rows > firstRows && elapsed > 0.5) {
      const secs = Math.max(0, Math.round(((total - rows) * elapsed) / (rows - firstRows)));
      eta = secs < 1 ? " · ETA under a second" : ` · ETA ${secs} s`;
    }
    text.textContent = `Phase: ${enumLabel(p.phase, "EXPORT_PHASE_")} · ${fmtInt(rows)}${total ? " / " + fmtInt(total) : ""} rows · ${fmtBytes(Number(p.bytesUploaded ?? 0))}${eta}`;
    if (p.error?.code) text.textContent += ` · ${p.error.code}: ${p.error.message ?? ""}${p.error.providerMessage ? " (provider: " + p.error.providerMessage + ")" : ""}`;
    cancelBtn.hidden = isTerminalPhase(p.phase);
  }

  async function follow(start: () => Promise<ExportProgress>): Promise<void> {
    firstRows = -1;
    sendBtn.disabled = true;
    try {
      const last = await start();
      show(last);
      announce(`Run ${enumLabel(last.phase, "EXPORT_PHASE_")}: ${fmtInt(last.rowsExported)} rows.`);
    } catch (err) {
      clear(msg, alertBox(err));
    } finally {
      sessionStorage.removeItem(ACTIVE_RUN(sid));
      sendBtn.disabled = false;
      await loadRuns();
      await refresh();
    }
  }

  async function refresh(): Promise<void> {
    try {
      s = unwrap(await api.GET("/v1/schedules/{id}", { params: { path: { id: sid } } })).schedule ?? s;
      renderDetails();
    } catch {
      /* keep the last */
    }
  }

  sendBtn.addEventListener("click", () => {
    clear(msg);
    currentRun = "";
    void follow(() => sendNow(api, sid, { onProgress: show }));
  });
  pauseBtn.addEventListener("click", async () => {
    const paused = s?.state === "SCHEDULE_STATE_PAUSED";
    try {
      const r = unwrap(
        await busy(pauseBtn, () =>
          paused ? api.POST("/v1/schedules/{id}:resume", { params: { path: { id: sid } }, body: {} }) : api.POST("/v1/schedules/{id}:pause", { params: { path: { id: sid } }, body: {} }),
        ),
      );
      s = r.schedule ?? s;
      renderDetails();
      announce(paused ? "Schedule resumed." : "Schedule paused.");
    } catch (err) {
      clear(msg, alertBox(err));
    }
  });
  const delBtn = button("Delete", async () => {
    if (!(await confirmDialog(`Delete ${s?.name}?`, h("p", null, "The schedule and its run history are deleted."), "Delete"))) return;
    try {
      unwrap(await api.DELETE("/v1/schedules/{id}", { params: { path: { id: sid } } }));
      announce("Schedule deleted.");
      navigate(`/workbooks/${encodeURIComponent(s?.workbookId ?? "")}`);
    } catch (err) {
      clear(msg, alertBox(err));
    }
  }, { class: "danger" });

  renderDetails();
  clear(
    main,
    h("h1", null, s.name || sid),
    h("p", null, "Workbook: ", h("a", { href: `/workbooks/${encodeURIComponent(s.workbookId ?? "")}`, "data-link": true }, s.workbookId ?? "")),
    h("div", { class: "actions" }, sendBtn, pauseBtn, h("a", { href: `/schedules/${encodeURIComponent(sid)}/edit`, "data-link": true, class: "button" }, "Edit"), delBtn),
    msg,
    progressBox,
    h("section", { "aria-labelledby": "details-h" }, h("h2", { id: "details-h" }, "Details"), details),
    h("h2", null, "Run history"),
    runsBox,
  );
  const runs = await loadRuns();
  // Reattach to a run started before a reload (this tab's, else any running one).
  const active = sessionStorage.getItem(ACTIVE_RUN(sid)) || runs.find((r) => r.state === "RUN_STATE_RUNNING" || r.state === "RUN_STATE_QUEUED")?.id;
  if (active) {
    currentRun = active;
    progressBox.hidden = false;
    text.textContent = "Reattaching to the running export…";
    void follow(() => watchExportRun(api, active, { onProgress: show }));
  }
}

// --- create / edit form -------------------------------------------------------------------

const FORMATS: [string, string][] = [["FORMAT_CSV", "CSV"], ["FORMAT_JSONL", "JSON Lines"], ["FORMAT_PARQUET", "Parquet"]];
const COMPRESSIONS: [string, string][] = [["COMPRESSION_NONE", "None"], ["COMPRESSION_GZIP", "gzip"], ["COMPRESSION_ZSTD", "zstd"]];
const CONDITIONS: [string, string][] = [["SEND_CONDITION_ALWAYS", "Always"], ["SEND_CONDITION_IF_DATA", "Only if there is data"], ["SEND_CONDITION_IF_NO_DATA", "Only if there is no data"]];
const MODES: [string, string][] = [["EXPORT_MODE_SNAPSHOT", "Snapshot (the whole element each run)"], ["EXPORT_MODE_INCREMENTAL", "Incremental (rows since the last run)"]];
const CATCHUPS: [string, string][] = [["CATCH_UP_ONE", "Run once for missed periods"], ["CATCH_UP_NONE", "Skip missed periods"]];
const TOKENS = ["{date}", "{time}", "{yyyy}", "{mm}", "{dd}", "{hh}", "{period_start}", "{period_end}", "{run_id}", "{schedule_id}"];

/** /workbooks/:id/schedules/new and /schedules/:id/edit. */
export async function scheduleFormPage(main: HTMLElement, params: string[], mode: "new" | "edit"): Promise<void> {
  let s: Schedule | undefined;
  let workbookId = params[0] ?? "";
  if (mode === "edit") {
    s = unwrap(await api.GET("/v1/schedules/{id}", { params: { path: { id: params[0] ?? "" } } })).schedule;
    workbookId = s?.workbookId ?? "";
  }
  const { workbook } = unwrap(await api.GET("/v1/workbooks/{id}", { params: { path: { id: workbookId } } }));
  let integrationNames: string[] = [];
  try {
    integrationNames = (unwrap(await api.GET("/v1/storageIntegrations", { params: { query: { pageSize: 100 } } })).storageIntegrations ?? []).map((i) => i.name ?? "");
  } catch {
    /* non-admins may not list integrations: type the name */
  }
  const p = "schedule.";
  const name = h("input", { type: "text", required: true, value: s?.name ?? "", autocomplete: "off" });
  const element = select((workbook?.elements ?? []).map((e) => [e.id ?? "", e.name || e.id || ""]), s?.elementId ?? workbook?.elements?.[0]?.id ?? "");
  const integration = h("input", { type: "text", required: true, list: "integration-names", value: s?.destination?.cloudStorage?.storageIntegrationName ?? integrationNames[0] ?? "", autocomplete: "off" });
  const intList = h("datalist", { id: "integration-names" }, integrationNames.map((n) => h("option", { value: n })));
  const uri = h("input", { type: "text", required: true, value: s?.destination?.cloudStorage?.uri ?? "", autocomplete: "off", spellcheck: "false" });
  const format = select(FORMATS, s?.format ?? "FORMAT_CSV");
  const compression = select(COMPRESSIONS, s?.compression ?? "COMPRESSION_NONE");
  const prefix = h("input", { type: "checkbox", checked: s?.prefixFileNameWithDatetime ?? false });
  const notify = h("input", { type: "text", value: (s?.notifyEmails ?? []).join(", "), autocomplete: "off" });
  const condition = select(CONDITIONS, s?.sendCondition ?? "SEND_CONDITION_ALWAYS");
  const exportMode = select(MODES, s?.mode ?? "EXPORT_MODE_SNAPSHOT");
  const catchUp = select(CATCHUPS, s?.catchUp ?? "CATCH_UP_ONE");
  const cron = h("input", { type: "text", required: true, value: s?.cron ?? "0 6 * * *", autocomplete: "off", spellcheck: "false" });
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zone = h("input", { type: "text", required: true, list: "zones", value: s?.timeZone ?? browserZone, autocomplete: "off" });
  const zoneNames = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  const zones = h("datalist", { id: "zones" }, zoneNames.map((z) => h("option", { value: z })));
  const preview = h("ol", { class: "preview", id: "cron-preview", "aria-live": "polite", "aria-label": "Next five run times" });
  const previewErr = h("p", { class: "field-error", hidden: true, role: "alert" });

  const uriHelp = h(
    "details",
    null,
    h("summary", null, "URI templating help"),
    h("p", null, "The URI must lie under the integration's destination. Tokens are filled in the schedule's time zone for each run:"),
    h("ul", null, TOKENS.map((t) => h("li", null, h("code", null, t)))),
    h("p", null, "Example: ", h("code", null, "s3://bucket/audit/{yyyy}/{mm}/audit-{date}.csv.gz"), ". The extension must agree with the format and compression."),
  );

  let seq = 0;
  let timer = 0;
  async function updatePreview(): Promise<void> {
    const mine = ++seq;
    try {
      const r = unwrap(await api.POST("/v1/schedules:preview", { body: { cron: cron.value.trim(), timeZone: zone.value.trim(), count: 5 } }));
      if (mine !== seq) return;
      previewErr.hidden = true;
      cron.removeAttribute("aria-invalid");
      zone.removeAttribute("aria-invalid");
      clear(preview, (r.runs ?? []).map((run) => h("li", null, h("time", { datetime: run.runTime ?? "" }, `${(run.localTime ?? "").replace("T", " ")} ${run.zoneAbbreviation ?? ""}`))));
    } catch (err) {
      if (mine !== seq) return;
      clear(preview);
      previewErr.textContent = errorMessage(err);
      previewErr.hidden = false;
    }
  }
  const schedulePreview = () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void updatePreview(), 250);
  };
  cron.addEventListener("input", schedulePreview);
  zone.addEventListener("input", schedulePreview);
  zone.addEventListener("change", schedulePreview);

  const submit = h("button", { type: "submit", class: "primary" }, mode === "new" ? "Create schedule" : "Save schedule");
  const cancelLink = h("a", { href: mode === "new" ? `/workbooks/${encodeURIComponent(workbookId)}` : `/schedules/${encodeURIComponent(s?.id ?? "")}`, "data-link": true, class: "button" }, "Cancel");
  const form: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": "sched-form-h", novalidate: true },
    h("h2", { id: "sched-form-h" }, mode === "new" ? `New schedule on ${workbook?.name}` : `Edit ${s?.name}`),
    field("Name", name, { field: p + "name" }),
    field("Element", element, { field: p + "elementId" }),
    h(
      "fieldset",
      null,
      h("legend", null, "Destination"),
      field("Storage integration", integration, { field: p + "destination.cloudStorage.storageIntegrationName", hint: "The integration's name (see Storage integrations)." }),
      intList,
      field("Destination URI", uri, { field: p + "destination.cloudStorage.uri", hint: uriHelp }),
      field("Prefix the file name with the date and time", prefix, { field: p + "prefixFileNameWithDatetime" }),
    ),
    h("fieldset", null, h("legend", null, "File"), h("div", { class: "row" }, field("Format", format, { field: p + "format" }), field("Compression", compression, { field: p + "compression" }))),
    h(
      "fieldset",
      null,
      h("legend", null, "When"),
      h("div", { class: "row" }, field("Cron (5 fields)", cron, { field: p + "cron", hint: "minute hour day-of-month month day-of-week, e.g. 0 6 * * 1-5" }), field("Time zone", zone, { field: p + "timeZone" }), zones),
      h("div", { class: "preview-box" }, h("h3", { id: "preview-h" }, "Next five run times (computed by the server)"), preview, previewErr),
      h("div", { class: "row" }, field("Catch-up", catchUp, { field: p + "catchUp" }), field("Mode", exportMode, { field: p + "mode" }), field("Send condition", condition, { field: p + "sendCondition" })),
    ),
    field("Notify e-mails on failure", notify, { field: p + "notifyEmails", hint: "Comma-separated addresses." }),
    h("div", { class: "actions" }, submit, cancelLink),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body: Schedule = {
      name: name.value.trim(),
      elementId: element.value,
      destination: { cloudStorage: { storageIntegrationName: integration.value.trim(), uri: uri.value.trim() } },
      prefixFileNameWithDatetime: prefix.checked,
      format: format.value as Schedule["format"],
      compression: compression.value as Schedule["compression"],
      cron: cron.value.trim(),
      timeZone: zone.value.trim(),
      sendCondition: condition.value as Schedule["sendCondition"],
      mode: exportMode.value as Schedule["mode"],
      catchUp: catchUp.value as Schedule["catchUp"],
      notifyEmails: notify.value.split(",").map((x) => x.trim()).filter(Boolean),
    };
    try {
      const saved = await busy(submit, async () => {
        if (mode === "new") {
          return unwrap(await api.POST("/v1/workbooks/{workbookId}/schedules", { params: { path: { workbookId } }, body })).schedule;
        }
        const mask = "name,element_id,destination,prefix_file_name_with_datetime,format,compression,cron,time_zone,send_condition,mode,catch_up,notify_emails";
        return unwrap(await api.PATCH("/v1/schedules/{schedule.id}", { params: { path: { "schedule.id": s?.id ?? "" }, query: { updateMask: mask } }, body })).schedule;
      });
      announce(mode === "new" ? `Created schedule ${saved?.name}.` : `Saved schedule ${saved?.name}.`);
      navigate(`/schedules/${encodeURIComponent(saved?.id ?? s?.id ?? "")}`);
    } catch (err) {
      showErrors(form, err);
    }
  });
  clear(main, h("h1", null, mode === "new" ? "New schedule" : "Edit schedule"), form);
  await updatePreview();
}
