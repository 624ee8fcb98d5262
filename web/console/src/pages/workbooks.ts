import { api, unwrap, AUDIT_LOGS_CONNECTION, session } from "../api";
import { AuditExportError } from "@auditexport/client";
import { announce, navigate } from "../nav";
import { h, clear, field, showErrors, table, button, busy, confirmDialog, alertBox, fmtTime, enumLabel } from "../ui";
import { elementView } from "./element";
import { schedulesTable } from "./schedules";

export async function connectionsPage(main: HTMLElement): Promise<void> {
  const box = h("div");
  clear(main, h("h1", null, "Connections"), h("p", null, "Tables you can explore. Exploring creates an unsaved workbook; Save as keeps it."), box);
  try {
    const { connections = [] } = unwrap(await api.GET("/v1/connections", { params: { query: { pageSize: 100 } } }));
    clear(
      box,
      connections.map((c) =>
        h(
          "section",
          { class: "card", "aria-labelledby": `con-${c.id}` },
          h("h2", { id: `con-${c.id}` }, c.name ?? c.id ?? ""),
          c.access ? null : h("p", { class: "alert" }, "You have no access to this connection (an ADMIN can grant it under Users & API keys)."),
          table(
            `Tables of ${c.name}`,
            ["Table", "Columns", "Actions"],
            (c.tables ?? []).map((t) => [
              h("code", null, t.name ?? ""),
              String(t.columns?.length ?? 0),
              h("a", { href: `/connections/${encodeURIComponent(c.id ?? "")}/tables/${encodeURIComponent(t.name ?? "")}`, "data-link": true, class: "button" }, `Explore ${t.name}`),
            ]),
          ),
        ),
      ),
    );
  } catch (err) {
    clear(box, alertBox(err));
  }
}

/** /connections/:id/tables/:table — ExploreTable, then the element editor and Save as. */
export async function explorePage(main: HTMLElement, [conId, tableName]: string[]): Promise<void> {
  clear(main, h("h1", null, `Explore ${tableName}`), h("p", { role: "status" }, "Opening…"));
  const { workbook } = unwrap(await api.POST("/v1/connections/{connectionId}/tables/{table}:explore", { params: { path: { connectionId: conId ?? "", table: tableName ?? "" } }, body: {} }));
  if (!workbook) throw new Error("ExploreTable returned no workbook");
  const name = h("input", { type: "text", required: true, autocomplete: "off" });
  const folder = h("input", { type: "text", autocomplete: "off" });
  const save = h("button", { type: "submit", class: "primary" }, "Save as workbook");
  const form: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": "saveas-h" },
    h("h2", { id: "saveas-h" }, "Save as"),
    h("div", { class: "row" }, field("Workbook name", name, { field: "name" }), field("Folder", folder, { field: "folder" })),
    h("div", { class: "actions" }, save),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = unwrap(await busy(save, () => api.POST("/v1/workbooks/{id}:saveAs", { params: { path: { id: workbook.id ?? "" } }, body: { name: name.value.trim(), folder: folder.value.trim() } })));
      announce(`Saved workbook ${r.workbook?.name}.`);
      navigate(`/workbooks/${encodeURIComponent(r.workbook?.id ?? workbook.id ?? "")}`);
    } catch (err) {
      showErrors(form, err);
    }
  });
  const box = h("div");
  clear(main, h("h1", null, `Explore ${tableName}`), h("p", null, `Connection ${conId}. This exploration is unsaved until you save it as a workbook.`), form, box);
  await elementView(box, workbook, undefined, { label: `${tableName} rows` });
}

export async function workbooksPage(main: HTMLElement): Promise<void> {
  const box = h("div");
  clear(
    main,
    h("h1", null, "Workbooks"),
    h("div", { class: "actions" }, h("a", { href: `/connections/${AUDIT_LOGS_CONNECTION}/tables/AUDIT_LOGS`, "data-link": true, class: "button primary" }, "Explore AUDIT_LOGS")),
    box,
  );
  try {
    const { workbooks = [] } = unwrap(await api.GET("/v1/workbooks", { params: { query: { pageSize: 100 } } }));
    clear(
      box,
      table(
        "Workbooks",
        ["Name", "Folder", "Owner", "Updated"],
        workbooks.map((w) => [h("a", { href: `/workbooks/${encodeURIComponent(w.id ?? "")}`, "data-link": true }, w.name || "(unnamed)"), w.folder ?? "", w.owner ?? "", fmtTime(w.updateTime)]),
        { empty: "No saved workbooks. Explore AUDIT_LOGS and save it as a workbook." },
      ),
    );
  } catch (err) {
    clear(box, alertBox(err));
  }
}

export async function workbookPage(main: HTMLElement, [id]: string[]): Promise<void> {
  const { workbook } = unwrap(await api.GET("/v1/workbooks/{id}", { params: { path: { id: id ?? "" } } }));
  if (!workbook) throw new Error("no workbook");
  const title = h("h1", null, workbook.name || "(unnamed workbook)");
  const name = h("input", { type: "text", required: true, value: workbook.name ?? "", autocomplete: "off" });
  const folder = h("input", { type: "text", value: workbook.folder ?? "", autocomplete: "off" });
  const saveBtn = h("button", { type: "submit" }, "Rename");
  const form: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": "rename-h" },
    h("h2", { id: "rename-h" }, "Name and folder"),
    h("div", { class: "row" }, field("Name", name, { field: "workbook.name" }), field("Folder", folder, { field: "workbook.folder" })),
    h("div", { class: "actions" }, saveBtn, button("Delete workbook", () => void del(), { class: "danger" })),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = unwrap(
        await busy(saveBtn, () =>
          api.PATCH("/v1/workbooks/{workbook.id}", { params: { path: { "workbook.id": workbook.id ?? "" }, query: { updateMask: "name,folder" } }, body: { name: name.value.trim(), folder: folder.value.trim() } }),
        ),
      );
      title.textContent = r.workbook?.name ?? name.value;
      document.title = `${title.textContent} · auditexport`;
      announce(`Renamed to ${title.textContent}.`);
    } catch (err) {
      showErrors(form, err);
    }
  });
  async function del(): Promise<void> {
    const force = h("input", { type: "checkbox" });
    const ok = await confirmDialog(`Delete ${workbook?.name}?`, h("p", null, "The workbook and its elements are deleted."), "Delete", field("Also delete its schedules", force));
    if (!ok) return;
    try {
      unwrap(await api.DELETE("/v1/workbooks/{id}", { params: { path: { id: workbook?.id ?? "" }, query: { force: force.checked } } }));
      announce("Workbook deleted.");
      navigate("/workbooks");
    } catch (err) {
      showErrors(form, err);
    }
  }
  const schedBox = h("div");
  const elBox = h("div");
  clear(
    main,
    title,
    h("p", null, `Folder: ${workbook.folder || "—"} · Owner: ${workbook.owner ?? ""} · Updated ${fmtTime(workbook.updateTime)}`),
    form,
    h(
      "section",
      { "aria-labelledby": "wb-sched-h" },
      h("h2", { id: "wb-sched-h" }, "Schedules"),
      h("div", { class: "actions" }, h("a", { href: `/workbooks/${encodeURIComponent(workbook.id ?? "")}/schedules/new`, "data-link": true, class: "button primary" }, "New schedule")),
      schedBox,
    ),
    h("section", { "aria-labelledby": "wb-el-h" }, h("h2", { id: "wb-el-h" }, `Element: ${workbook.elements?.[0]?.name ?? ""}`), elBox),
  );
  await Promise.all([schedulesTable(schedBox, workbook.id), elementView(elBox, workbook, undefined, { label: `${workbook.name} rows` })]);
}

/** The organization's own AUDIT_LOGS, newest first: an exploration kept for this tab. */
export async function auditLogPage(main: HTMLElement): Promise<void> {
  clear(main, h("h1", null, "Audit log"), h("p", { role: "status" }, "Opening…"));
  try {
    await auditLog(main);
  } catch (err) {
    if (err instanceof AuditExportError && err.codeName === "PERMISSION_DENIED") {
      clear(
        main,
        h("h1", null, "Audit log"),
        h(
          "div",
          { class: "alert", role: "alert" },
          `Your account type (${enumLabel(session.user?.accountType, "ACCOUNT_TYPE_")}) may not explore tables, so the audit log cannot be opened here. `,
          "Open a saved workbook over AUDIT_LOGS under ",
          h("a", { href: "/workbooks", "data-link": true }, "Workbooks"),
          " instead, or ask an ADMIN.",
        ),
      );
      return;
    }
    throw err;
  }
}

async function auditLog(main: HTMLElement): Promise<void> {
  const KEY = "auditexport.auditLogWorkbook";
  let wb = null;
  const kept = sessionStorage.getItem(KEY);
  if (kept) {
    try {
      wb = unwrap(await api.GET("/v1/workbooks/{id}", { params: { path: { id: kept } } })).workbook ?? null;
    } catch {
      wb = null;
    }
  }
  if (!wb) {
    wb = unwrap(await api.POST("/v1/connections/{connectionId}/tables/{table}:explore", { params: { path: { connectionId: AUDIT_LOGS_CONNECTION, table: "AUDIT_LOGS" } }, body: {} })).workbook ?? null;
    if (!wb) throw new Error("ExploreTable returned no workbook");
    const el = wb.elements?.[0];
    if (el) {
      el.sort = [{ column: "REQUEST_TIME", descending: true }];
      wb = unwrap(await api.PATCH("/v1/workbooks/{workbook.id}", { params: { path: { "workbook.id": wb.id ?? "" }, query: { updateMask: "elements" } }, body: { elements: [el] } })).workbook ?? wb;
    }
    sessionStorage.setItem(KEY, wb.id ?? "");
  }
  const box = h("div");
  clear(main, h("h1", null, "Audit log"), h("p", null, "Every API call of your organization, newest first. Filter it below."), box);
  await elementView(box, wb, undefined, { label: "Audit log rows" });
}
