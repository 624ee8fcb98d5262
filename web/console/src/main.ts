import "./style.css";
import { api, apiKey, clearSession, isAdmin, session, setApiKey, unwrap } from "./api";
import { h, clear, field, showErrors, enumLabel, busy, errorMessage } from "./ui";
import { routes, type Page } from "./pages";
import { announce, navigate, setLive, setRenderer } from "./nav";

const app = document.getElementById("app")!;
const live = h("div", { class: "sr-only", "aria-live": "polite", role: "status" });

setRenderer(() => void render());
setLive(live);

document.addEventListener("click", (e) => {
  const a = (e.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download") || e.defaultPrevented) return;
  const me = e as MouseEvent;
  if (me.button !== 0 || me.metaKey || me.ctrlKey || me.shiftKey || me.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !a.hasAttribute("data-link")) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", () => void render());

interface NavItem {
  path: string;
  label: string;
  admin?: boolean;
}
const NAV: NavItem[] = [
  { path: "/integrations", label: "Storage integrations", admin: true },
  { path: "/connections", label: "Connections" },
  { path: "/workbooks", label: "Workbooks" },
  { path: "/schedules", label: "Schedules" },
  { path: "/users", label: "Users & API keys", admin: true },
  { path: "/audit-log", label: "Audit log" },
];

function header(path: string): HTMLElement {
  const links = NAV.filter((n) => !n.admin || isAdmin()).map((n) => {
    const current = path === n.path || path.startsWith(n.path + "/");
    return h("li", null, h("a", { href: n.path, "data-link": true, "aria-current": current ? "page" : false }, n.label));
  });
  const u = session.user;
  return h(
    "header",
    { class: "top" },
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h("a", { class: "brand", href: "/", "data-link": true }, "auditexport"),
    h("nav", { "aria-label": "Main" }, h("ul", null, links)),
    h(
      "div",
      { class: "who" },
      u ? h("span", null, u.email, " ", h("span", { class: "badge" }, enumLabel(u.accountType, "ACCOUNT_TYPE_"))) : null,
      h("button", { type: "button", onclick: signOut }, "Sign out"),
    ),
  );
}

function signOut(): void {
  clearSession();
  session.user = null;
  navigate("/signin");
  announce("Signed out.");
}


function signInPage(main: HTMLElement, next: string): void {
  const key = h("input", { type: "password", name: "apiKey", autocomplete: "off", required: true, spellcheck: "false" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form: HTMLFormElement = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signin-h" },
    field("API key", key, { field: "apiKey", hint: "The key starts with aek_. It is kept in this browser tab only (sessionStorage) and sent as a bearer token." }),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const k = key.value.trim();
    setApiKey(k);
    try {
      await busy(submit, async () => {
        const { user } = unwrap(await api.GET("/v1/users/me"));
        session.user = user ?? null;
      });
      announce(`Signed in as ${session.user?.email ?? ""}.`);
      navigate(next && next !== "/signin" ? next : "/", true);
    } catch (err) {
      clearSession();
      showErrors(form, err);
    }
  });
  clear(
    main,
    h("h1", { tabindex: -1 }, "Sign in to auditexport"),
    h("p", null, "Paste an API key. The first admin's key is printed once when the server starts on an empty database."),
    form,
  );
}

let renderSeq = 0;
async function render(): Promise<void> {
  const seq = ++renderSeq;
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const main = h("main", { id: "main", tabindex: -1 });
  if (!apiKey()) {
    clear(app, main, live);
    document.title = "Sign in · auditexport";
    signInPage(main, path === "/" ? "/" : path + location.search);
    main.querySelector("input")?.focus();
    return;
  }
  if (!session.user) {
    try {
      const { user } = unwrap(await api.GET("/v1/users/me"));
      session.user = user ?? null;
    } catch {
      clearSession();
      return render();
    }
  }
  if (seq !== renderSeq) return;
  if (path === "/" || path === "/signin") {
    navigate(isAdmin() ? "/integrations" : "/workbooks", true);
    return;
  }
  let page: Page | null = null;
  let params: string[] = [];
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      page = r;
      params = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  clear(app, header(path), main, live);
  if (!page) {
    document.title = "Not found · auditexport";
    clear(main, h("h1", { tabindex: -1 }, "Page not found"), h("p", null, "There is no page at ", h("code", null, path), ". ", h("a", { href: "/", "data-link": true }, "Go to the start page"), "."));
    focusHeading(main);
    return;
  }
  document.title = `${page.title} · auditexport`;
  if (page.admin && !isAdmin()) {
    clear(
      main,
      h("h1", { tabindex: -1 }, page.title),
      h(
        "div",
        { class: "alert", role: "alert" },
        `This page is for administrators. You are signed in as ${session.user?.email ?? "?"} with the ${enumLabel(session.user?.accountType, "ACCOUNT_TYPE_")} account type, which may not manage ${page.title.toLowerCase()}. Ask an ADMIN of your organization.`,
      ),
    );
    focusHeading(main);
    return;
  }
  try {
    await page.render(main, params, new URLSearchParams(location.search));
  } catch (err) {
    if (!main.querySelector("h1")) main.prepend(h("h1", null, page.title));
    main.append(h("div", { class: "alert", role: "alert" }, errorMessage(err)));
  }
  if (seq === renderSeq) focusHeading(main);
}

function focusHeading(main: HTMLElement): void {
  const h1 = main.querySelector<HTMLElement>("h1");
  if (h1) {
    h1.tabIndex = -1;
    h1.focus();
  }
}

void render();
