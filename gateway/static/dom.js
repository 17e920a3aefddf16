// labelscan pages' DOM helpers, loaded before each page's own script (the seller page,
// the admin dashboard): values from the API go into a page as text, never as markup.
// The pages' CSP enforces Trusted Types, so a string assigned to an HTML sink would throw.
"use strict";

const $ = (id) => document.getElementById(id);

/** An element with text-only content: strings become text nodes, never markup. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}
