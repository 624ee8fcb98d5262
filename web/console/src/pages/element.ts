// The element editor and its table: column filters (the API's operators), a relative time
// range, sort, and a paged table of QueryElement; "Apply" saves the element (UpdateWorkbook).
import { api, unwrap, type Element, type Filter, type Column } from "../api";
import { announce } from "../nav";
import { h, clear, field, select, showErrors, clearErrors, table, button, busy, fmtInt } from "../ui";
import type { Schemas } from "@auditexport/client";

type Workbook = Schemas["v1Workbook"];

export const OPERATORS: [string, string][] = [
  ["FILTER_OPERATOR_EQUALS", "equals"],
  ["FILTER_OPERATOR_NOT_EQUALS", "does not equal"],
  ["FILTER_OPERATOR_IN", "is one of"],
  ["FILTER_OPERATOR_NOT_IN", "is none of"],
  ["FILTER_OPERATOR_CONTAINS", "contains"],
  ["FILTER_OPERATOR_GREATER_THAN", "greater than"],
  ["FILTER_OPERATOR_LESS_THAN", "less than"],
  ["FILTER_OPERATOR_BETWEEN", "between"],
];
const MULTI = new Set(["FILTER_OPERATOR_IN", "FILTER_OPERATOR_NOT_IN", "FILTER_OPERATOR_BETWEEN"]);

const RANGES: [string, string][] = [
  ["", "All time"],
  ["3600s", "Last hour"],
  ["86400s", "Last 24 hours"],
  ["604800s", "Last 7 days"],
  ["2592000s", "Last 30 days"],
  ["7776000s", "Last 90 days"],
];

const PAGE_SIZE = 25;

export interface ElementViewOptions {
  /** Label of the table region. */
  label: string;
  /** Called after a successful Apply with the saved workbook. */
  onSaved?: (wb: Workbook) => void;
}

/** Renders the editor + table of the workbook's first element (or elementId) into box. */
export async function elementView(box: HTMLElement, wb: Workbook, elementId: string | undefined, opts: ElementViewOptions): Promise<void> {
  const elements = wb.elements ?? [];
  const el: Element = structuredClone(elements.find((e) => e.id === elementId) ?? elements[0] ?? {});
  let columns: Column[] = [];
  const tableBox = h("div");
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  const filtersList = h("ul", { class: "filters", "aria-label": "Filters" });
  const range = select(RANGES, el.relativeTimeRange?.last ?? "");
  const sortCol = h("select");
  const sortDesc = h("input", { type: "checkbox", checked: el.sort?.[0]?.descending ?? false });
  const filters: Filter[] = structuredClone(el.filters ?? []);
  const tokens: string[] = [""];
  let pageIdx = 0;

  const applyBtn = h("button", { type: "submit", class: "primary" }, "Apply");
  const form: HTMLFormElement = h(
    "form",
    { class: "card editor", "aria-label": "Filters and sort" },
    h("h2", null, "Filters and sort"),
    filtersList,
    h("div", { class: "actions" }, button("Add filter", () => addFilter())),
    h("div", { class: "row" }, field("Time range (REQUEST_TIME)", range, { field: "relativeTimeRange" }), field("Sort by", sortCol, { field: "sort" }), field("Descending", sortDesc)),
    h("div", { class: "actions" }, applyBtn),
  );

  function colOptions(): [string, string][] {
    return columns.map((c) => [c.name ?? "", c.name ?? ""]);
  }

  function renderFilters(): void {
    clear(
      filtersList,
      filters.length === 0 ? h("li", { class: "hint" }, "No filters: every row.") : null,
      filters.map((f, i) => {
        const col = select(colOptions(), f.column ?? "", { "aria-label": `Filter ${i + 1} column` });
        col.dataset["field"] = `elements.filters.column`;
        const op = select(OPERATORS, f.operator ?? "FILTER_OPERATOR_EQUALS", { "aria-label": `Filter ${i + 1} operator` });
        const val = h("input", { type: "text", value: (f.values ?? []).join(", "), "aria-label": `Filter ${i + 1} value`, autocomplete: "off" });
        const hintFor = () => (MULTI.has(op.value) ? "Comma-separated values" + (op.value === "FILTER_OPERATOR_BETWEEN" ? " (low, high)" : "") : "");
        val.placeholder = hintFor();
        col.addEventListener("change", () => (f.column = col.value));
        op.addEventListener("change", () => {
          f.operator = op.value as Filter["operator"];
          val.placeholder = hintFor();
        });
        val.addEventListener("input", () => {
          f.values = MULTI.has(op.value) ? val.value.split(",").map((s) => s.trim()).filter(Boolean) : [val.value];
        });
        return h("li", { class: "filter" }, col, op, val, button("Remove", () => {
          filters.splice(i, 1);
          renderFilters();
        }, { "aria-label": `Remove filter ${i + 1}` }));
      }),
    );
  }

  function addFilter(): void {
    filters.push({ column: columns[0]?.name ?? "", operator: "FILTER_OPERATOR_EQUALS", values: [""] });
    renderFilters();
    filtersList.querySelectorAll("select")[(filters.length - 1) * 2]?.focus();
  }

  function renderSort(): void {
    const cur = el.sort?.[0]?.column ?? "";
    clear(sortCol, h("option", { value: "" }, "(default)"), colOptions().map(([v, l]) => h("option", { value: v }, l)));
    sortCol.value = cur;
  }

  async function load(): Promise<void> {
    status.textContent = "Loading…";
    try {
      const r = unwrap(
        await api.POST("/v1/workbooks/{workbookId}/elements/{elementId}:query", {
          params: { path: { workbookId: wb.id ?? "", elementId: el.id ?? "" } },
          body: { pageSize: PAGE_SIZE, pageToken: tokens[pageIdx] ?? "" },
        }),
      );
      const first = columns.length === 0;
      columns = r.columns ?? [];
      if (first) {
        renderFilters();
        renderSort();
      }
      const names = columns.map((c) => c.name ?? "");
      clear(
        tableBox,
        table(
          opts.label,
          names,
          (r.rows ?? []).map((row) => (row.values ?? []).map((v) => cell(v))),
          { empty: "No rows match." },
        ),
      );
      const total = Number(r.totalRows ?? 0);
      const from = pageIdx * PAGE_SIZE + 1;
      const to = pageIdx * PAGE_SIZE + (r.rows?.length ?? 0);
      status.textContent = total === 0 ? "0 rows" : `Rows ${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(total)}`;
      if (r.nextPageToken) tokens[pageIdx + 1] = r.nextPageToken;
      else tokens.length = pageIdx + 1;
      clear(
        pager,
        button("Previous page", () => {
          pageIdx--;
          void load();
        }, { disabled: pageIdx === 0 }),
        button("Next page", () => {
          pageIdx++;
          void load();
        }, { disabled: !r.nextPageToken }),
      );
    } catch (err) {
      status.textContent = "";
      clear(tableBox, h("div", { class: "alert", role: "alert" }, String((err as Error).message ?? err)));
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const next: Element = {
      ...el,
      filters: filters.map((f) => ({ column: f.column ?? "", operator: f.operator ?? "FILTER_OPERATOR_EQUALS", values: f.values ?? [] })),
      sort: sortCol.value ? [{ column: sortCol.value, descending: sortDesc.checked }] : [],
    };
    if (range.value) next.relativeTimeRange = { column: "REQUEST_TIME", last: range.value };
    else delete next.relativeTimeRange;
    const all = (wb.elements ?? []).map((x) => (x.id === el.id ? next : x));
    try {
      const { workbook } = unwrap(
        await busy(applyBtn, () =>
          api.PATCH("/v1/workbooks/{workbook.id}", { params: { path: { "workbook.id": wb.id ?? "" }, query: { updateMask: "elements" } }, body: { elements: all } }),
        ),
      );
      if (workbook) {
        wb.elements = workbook.elements ?? all;
        Object.assign(el, next);
        opts.onSaved?.(workbook);
      }
      pageIdx = 0;
      tokens.length = 1;
      await load();
      announce(status.textContent ?? "Applied.");
    } catch (err) {
      showErrors(form, err);
    }
  });

  clear(box, form, status, tableBox, pager);
  await load();
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
