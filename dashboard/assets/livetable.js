// LiveTable (dashboard/components/table.py): the server sends the page to show, then only the
// cells that changed; those are written into the existing cells and the row lights up.
const FLASH_MS = 2500;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function render({ model, el: root }) {
  const wrap = el("div", {class: "live-table"});
  const table = el("table");
  const thead = el("thead");
  const tbody = el("tbody");
  const pager = el("nav", {class: "pager", "aria-label": "pages"});
  table.append(thead, tbody);
  wrap.append(table, pager);
  root.append(wrap);
  const rowsByKey = new Map();
  let filterBox = null;

  function setCell(td, field, value) {
    // Markup only for the server's own badges; everything else is text, never parsed.
    if (model.html_columns.includes(field)) td.innerHTML = value;
    else td.textContent = value;
  }

  function head() {
    const labels = el("tr");
    for (const [field, label] of model.columns) {
      const th = el("th", {scope: "col", "data-field": field});
      if (model.numeric_columns.includes(field)) th.className = "num";
      const button = el("button", {type: "button"}, label);
      if (model.sort === field) {
        th.setAttribute("aria-sort", model.descending ? "descending" : "ascending");
        button.append(el("span", {class: "arrow", "aria-hidden": "true"}, model.descending ? " ▼" : " ▲"));
      }
      button.addEventListener("click", () => {
        if (model.sort === field) model.descending = !model.descending;
        else { model.descending = false; model.sort = field; }
      });
      th.append(button);
      labels.append(th);
    }
    const rows = [labels];
    if (model.filter_field) {
      const filters = el("tr", {class: "filters"});
      for (const [field, label] of model.columns) {
        const td = el("td");
        if (field === model.filter_field) {
          if (!filterBox) {
            filterBox = el("input", {type: "search", "aria-label": `filter by ${label}`,
                                     placeholder: "filter", autocomplete: "off"});
            let timer = null;
            filterBox.addEventListener("input", () => {
              clearTimeout(timer);
              timer = setTimeout(() => { model.filter_text = filterBox.value; }, 250);
            });
          }
          filterBox.value = model.filter_text;
          td.append(filterBox);
        }
        filters.append(td);
      }
      rows.push(filters);
    }
    thead.replaceChildren(...rows);
  }

  function body() {
    rowsByKey.clear();
    const trs = [];
    for (const [key, cells] of model.rows) {
      const tr = el("tr", {"data-key": String(key)});
      for (const [field] of model.columns) {
        const td = el("td", {"data-field": field});
        if (model.numeric_columns.includes(field)) td.className = "num";
        setCell(td, field, cells[field] ?? "");
        tr.append(td);
      }
      rowsByKey.set(String(key), tr);
      trs.push(tr);
    }
    if (!trs.length) {
      const td = el("td", {colspan: String(model.columns.length), class: "empty"}, `no ${model.noun}`);
      trs.push(el("tr", {}, undefined));
      trs[0].append(td);
    }
    tbody.replaceChildren(...trs);
  }

  function pageButton(label, page, current) {
    const b = el("button", {type: "button", "data-page": String(page)}, label);
    if (current) b.setAttribute("aria-current", "page");
    if (page < 1 || page > model.pages || current) b.disabled = true;
    b.addEventListener("click", () => { model.page = page; });
    return b;
  }

  function paging() {
    const parts = [el("span", {class: "total"}, `${model.total} ${model.noun}`)];
    if (model.pages > 1) {
      const p = model.page;
      parts.push(pageButton("First", 1, false), pageButton("Prev", p - 1, false));
      const from = Math.max(1, Math.min(p - 2, model.pages - 4));
      for (let n = from; n <= Math.min(model.pages, from + 4); n++) parts.push(pageButton(String(n), n, n === p));
      parts.push(pageButton("Next", p + 1, false), pageButton("Last", model.pages, false));
    }
    pager.replaceChildren(...parts);
  }

  model.on("msg:custom", (msg) => {
    if (!msg.patch) return;
    for (const [key, cells] of msg.patch) {
      const tr = rowsByKey.get(String(key));
      if (!tr) continue;
      const shown = model.rows.find(([k]) => String(k) === String(key));
      for (const [field, value] of Object.entries(cells)) {
        const td = tr.querySelector(`td[data-field="${CSS.escape(field)}"]`);
        if (td) setCell(td, field, value);
        if (shown) shown[1][field] = value;  // a later redraw shows the patched value
      }
      // Stepped, not smooth: a fade repainted every frame in twenty tabs costs real CPU.
      tr.animate([{backgroundColor: "#fff3a0"}, {backgroundColor: "transparent"}],
                 {duration: FLASH_MS, easing: "steps(5, end)"});
      tr.dataset.changed = String(Date.now());
    }
  });
  model.on("rows", body);
  model.on(["sort", "descending", "columns", "filter_text"], head);
  model.on(["page", "pages", "total"], paging);
  head();
  body();
  paging();
}
