// Building DOM without innerHTML: every string from the server becomes a text
// node or an attribute value, so no data can inject markup.

export type Child = Node | string | number | null | undefined | false | readonly Child[];
type Attrs = Record<string, string | number | boolean | undefined | ((e: Event) => void)>;

function fill<E extends Element>(el: E, attrs: Attrs, children: Child[]): E {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) fill(el, {}, c);
    else el.append(typeof c === "object" ? (c as Node) : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h("button", { onclick: go }, "Go"). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag: string, attrs: Attrs = {}, ...children: Child[]): SVGElement {
  return fill(document.createElementNS("http://www.w3.org/2000/svg", tag) as SVGElement, attrs, children);
}

/** Replaces the children of `el`. */
export function show(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  fill(el, {}, children);
}

/** A labelled input; its value is read back through the returned element. */
export function field(label: string, name: string, opts: { value?: string; placeholder?: string; size?: number } = {}): [HTMLLabelElement, HTMLInputElement] {
  const input = h("input", { name, value: opts.value, placeholder: opts.placeholder, size: opts.size ?? 38, autocomplete: "off", spellcheck: "false" });
  return [h("label", {}, h("span", {}, label), input), input];
}

/** A labelled select. */
export function choice(label: string, name: string, options: readonly string[], selected?: string): [HTMLLabelElement, HTMLSelectElement] {
  const sel = h("select", { name }, ...options.map((o) => h("option", { value: o, selected: o === selected }, o)));
  return [h("label", {}, h("span", {}, label), sel), sel];
}

/** Short display of a UUID (first block), the full one in the tooltip. */
export function shortId(id: string | undefined): HTMLElement {
  return h("code", { title: id ?? "" }, id ? `${id.slice(0, 8)}…` : "—");
}

/** Strips an enum prefix: "DECISION_REASON_NO_GRANT" → "NO_GRANT". */
export function enumName(value: string | undefined, prefix: string): string {
  return (value ?? "").replace(prefix, "") || "UNSPECIFIED";
}
