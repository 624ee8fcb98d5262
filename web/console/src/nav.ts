// Client-side navigation (History API); main registers the renderer.
let renderer: () => void = () => undefined;
export function setRenderer(fn: () => void): void {
  renderer = fn;
}
export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  renderer();
}
let live: HTMLElement | null = null;
export function setLive(el: HTMLElement): void {
  live = el;
}
/** Tells screen-reader users what happened (polite live region). */
export function announce(msg: string): void {
  if (!live) return;
  const el = live;
  el.textContent = "";
  setTimeout(() => (el.textContent = msg), 50);
}
