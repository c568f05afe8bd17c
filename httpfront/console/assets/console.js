// pgwarden web console: runs the SQL box through POST /_sql with the
// session cookie and the session's CSRF token, and shows the answer as a
// table. Everything is built with DOM calls and textContent, never HTML
// strings, so no value from the database can become markup.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const form = document.getElementById("sql-form");
  const stmt = document.getElementById("stmt");
  const db = document.getElementById("db");
  const run = document.getElementById("run");
  const status = document.getElementById("status");
  const errorBox = document.getElementById("error");
  const wrap = document.getElementById("table-wrap");

  // Exact is a JSON number whose digits a JavaScript number cannot hold
  // (int8 beyond 2^53, numeric): the answer's own text is kept and shown.
  class Exact {
    constructor(source) { this.source = source; }
  }

  // parseExact parses JSON keeping every number digit for digit, where the
  // browser gives the reviver the source text (JSON.parse source access).
  function parseExact(text) {
    return JSON.parse(text, function (key, value, context) {
      if (typeof value === "number" && context && typeof context.source === "string" && String(value) !== context.source) {
        return new Exact(context.source);
      }
      return value;
    });
  }

  // show renders a value as text: JSON for arrays and objects (json and
  // jsonb arrive embedded), numbers exactly as the server wrote them.
  function show(v) {
    if (v instanceof Exact) return v.source;
    if (Array.isArray(v)) return "[" + v.map(showJSON).join(", ") + "]";
    if (v !== null && typeof v === "object") return showJSON(v);
    return String(v);
  }

  function showJSON(v) {
    if (v === null) return "null";
    if (v instanceof Exact) return v.source;
    if (Array.isArray(v)) return "[" + v.map(showJSON).join(", ") + "]";
    if (typeof v === "object") {
      return "{" + Object.keys(v).map(function (k) { return JSON.stringify(k) + ": " + showJSON(v[k]); }).join(", ") + "}";
    }
    return JSON.stringify(v);
  }

  function isNumeric(v) {
    return typeof v === "number" || v instanceof Exact;
  }

  // Columns of these types are aligned right, heading and values alike.
  const numericTypes = new Set(["int2", "int4", "int8", "numeric", "float4", "float8", "oid", "money"]);

  function clear() {
    status.textContent = "";
    errorBox.textContent = "";
    wrap.hidden = true;
    wrap.replaceChildren();
  }

  function showError(code, message, extra) {
    const p = document.createElement("p");
    p.className = "error";
    const c = document.createElement("strong");
    c.textContent = "ERROR " + code + ": ";
    p.append(c, message);
    errorBox.replaceChildren(p);
    if (extra) errorBox.append(extra);
  }

  function loginLink() {
    const p = document.createElement("p");
    const a = document.createElement("a");
    a.href = "/";
    a.textContent = "Log in again";
    p.append(a);
    return p;
  }

  function renderTable(res) {
    const table = document.createElement("table");
    table.id = "result-table";
    const caption = document.createElement("caption");
    caption.textContent = res.rows.length + (res.rows.length === 1 ? " row" : " rows") + " from database " + db.value;
    table.append(caption);
    const thead = table.createTHead();
    const hr = thead.insertRow();
    res.cols.forEach(function (name, i) {
      const th = document.createElement("th");
      th.scope = "col";
      if (numericTypes.has(res.col_types[i])) th.className = "num";
      const n = document.createElement("span");
      n.className = "col-name";
      n.textContent = name;
      const t = document.createElement("span");
      t.className = "col-type";
      t.textContent = res.col_types[i];
      th.append(n, t);
      hr.append(th);
    });
    const tbody = table.createTBody();
    res.rows.forEach(function (row) {
      const tr = tbody.insertRow();
      row.forEach(function (v) {
        const td = tr.insertCell();
        if (v === null) {
          // NULL is not the text "NULL": it is styled apart, and said
          // as "null value" to screen readers.
          td.className = "null";
          const s = document.createElement("span");
          s.textContent = "NULL";
          s.setAttribute("aria-label", "null value");
          td.append(s);
          return;
        }
        if (isNumeric(v)) td.className = "num";
        td.textContent = show(v);
      });
    });
    wrap.replaceChildren(table);
    wrap.hidden = false;
  }

  async function sql(database, statement) {
    const resp = await fetch("/_sql?db=" + encodeURIComponent(database), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ stmt: statement }),
    });
    const text = await resp.text();
    let body;
    try {
      body = parseExact(text);
    } catch (e) {
      body = { error: { code: "XX000", message: "the answer was not JSON (HTTP " + resp.status + ")" } };
    }
    return { status: resp.status, body: body };
  }

  async function runStatement() {
    const statement = stmt.value.trim();
    if (!statement) {
      stmt.focus();
      return;
    }
    clear();
    run.disabled = true;
    form.setAttribute("aria-busy", "true");
    status.textContent = "Running…";
    try {
      const r = await sql(db.value, statement);
      status.textContent = "";
      if (r.body.error) {
        const ended = r.status === 401 || (r.body.error.code === "28P01" && r.status !== 400);
        showError(r.body.error.code, r.body.error.message, ended ? loginLink() : null);
        return;
      }
      const res = r.body;
      const ms = typeof res.duration === "number" ? " in " + res.duration + " ms" : "";
      if (res.cols.length > 0) {
        status.textContent = res.rows.length + (res.rows.length === 1 ? " row" : " rows") + ms + ".";
        renderTable(res);
      } else {
        status.textContent = "Done: " + res.rowcount + (res.rowcount === 1 ? " row" : " rows") + " affected" + ms + ".";
      }
    } catch (e) {
      status.textContent = "";
      showError("08006", "pgwarden could not be reached: " + e.message);
    } finally {
      run.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  // loadDatabases adds the backend's databases to the picker's suggestions;
  // the picker still takes any name.
  async function loadDatabases() {
    try {
      const r = await sql(db.value, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1");
      if (r.body.error) return;
      const list = document.getElementById("db-list");
      const have = new Set(Array.from(list.options).map(function (o) { return o.value; }));
      r.body.rows.forEach(function (row) {
        if (!have.has(row[0])) {
          const o = document.createElement("option");
          o.value = row[0];
          list.append(o);
        }
      });
    } catch (e) {
      // Suggestions are a convenience; the picker works without them.
    }
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    runStatement();
  });
  stmt.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      runStatement();
    }
  });
  loadDatabases();
})();
