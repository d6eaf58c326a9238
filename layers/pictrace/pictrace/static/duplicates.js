// PicTrace's Duplicates view (#duplicates): the copy groups the stack found among the indexed images (GET
// duplicates), each image's thumbnail, a compare link per pair (the page's compare dialog) and a "not a copy" button
// (POST duplicates/dismiss). It uses the page's own API calls, pictures and errors (window.PicTrace, app.js).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const P = window.PicTrace;
  const view = $("duplicates");
  const groupsEl = $("dup-groups");
  const summary = $("dup-summary");
  const more = $("dup-more");
  const form = $("dup-form");
  const prefix = $("dup-prefix");
  const SEARCH_PARTS = ["drop", "query", "results"].map($);
  let loading = 0; // the newest listing; answers to older ones are dropped
  let cursor = null;
  let shown = { groups: 0, images: 0, total: 0 };

  const isOpen = () => location.hash === "#duplicates" || location.hash.startsWith("#duplicates?");

  function show(open) {
    view.hidden = !open;
    for (const part of SEARCH_PARTS) part.classList.toggle("dup-away", open);
    $("nav-duplicates").classList.toggle("active", open);
    if (open) load(true);
  }

  async function load(fresh) {
    const token = ++loading;
    if (fresh) {
      cursor = null;
      shown = { groups: 0, images: 0, total: 0 };
      groupsEl.replaceChildren();
    }
    P.clearError();
    summary.replaceChildren(P.el("span", { class: "spinner" }), "Looking for copies…");
    const query = new URLSearchParams({ limit: "24" });
    if (prefix.value.trim()) query.set("prefix", prefix.value.trim());
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await P.api(`duplicates?${query}`);
      if (token !== loading) return;
      cursor = page.next;
      shown = { groups: shown.groups + page.groups.length, images: page.images, total: page.total };
      groupsEl.append(...page.groups.map(group));
      more.hidden = !cursor;
      const where = prefix.value.trim() ? ` under ${prefix.value.trim()}` : "";
      summary.replaceChildren(
        page.total
          ? P.el("span", {}, P.el("b", {}, String(page.total)), ` group${page.total === 1 ? "" : "s"} of copies${where}, `,
              P.el("b", {}, String(page.images)), " images · the oldest image of each first")
          : P.el("span", {}, `No copies found${where}. An index built before the check: \`pictrace duplicates --rebuild\`.`)
      );
    } catch (err) {
      if (token !== loading) return;
      summary.replaceChildren();
      P.showError(err.title || "Could not list the copies.", err.detail || String(err));
    }
  }

  function group(g) {
    const byId = new Map(g.images.map((m) => [m.id, m]));
    const name = (id) => P.basename((byId.get(id)?.keys || [id])[0]);
    const images = g.images.map((m, i) => {
      const key = m.keys[0] || m.id;
      return P.el(
        "figure",
        { class: `dup-image${i === 0 ? " oldest" : ""}`, "data-id": m.id, title: `${m.keys.join("\n")}\nid ${m.id}\nindexed ${m.created}` },
        P.el(
          "div",
          { class: "thumb" },
          P.picture(P.browserShows(key) ? m.url : null, key, "no preview", `thumbnail/${m.id}`),
          i === 0 ? P.el("span", { class: "dup-oldest", title: "indexed first" }, "oldest") : null
        ),
        P.el("figcaption", {}, P.basename(key), m.keys.length > 1 ? P.el("span", { class: "more" }, ` +${m.keys.length - 1}`) : null)
      );
    });
    const links = g.links.map((k) =>
      P.el(
        "li",
        { class: "dup-link", "data-a": k.a, "data-b": k.b },
        P.el("span", { class: "dup-pair" }, name(k.a), " ↔ ", name(k.b)),
        P.el("b", { class: "dup-sim", title: "the calibrated chance that one is a copy of the other" }, `${Number(k.similarity).toFixed(1)}%`),
        k.weak ? P.el("span", { class: "dup-weak", title: "the model alone found it, against the geometric check: it counts only because another image here is linked to both" }, "weak") : null,
        P.el(
          "button",
          {
            type: "button",
            class: "compare-button dup-compare",
            title: "show the matched keypoints and where one sits in the other",
            "aria-haspopup": "dialog",
            onclick: () => P.compare(k.a, { id: k.b, keys: byId.get(k.b)?.keys || [] }),
          },
          "compare"
        ),
        P.el(
          "button",
          { type: "button", class: "compare-button dup-dismiss", title: "these two are not copies: keep them out of the groups", onclick: (e) => dismiss(k, e.target) },
          "not a copy"
        )
      )
    );
    return P.el(
      "article",
      { class: "dup-group", "data-first": g.images[0].id },
      P.el("div", { class: "dup-images" }, images),
      P.el("ul", { class: "dup-links" }, links)
    );
  }

  async function dismiss(link, button) {
    button.disabled = true;
    try {
      await P.api("duplicates/dismiss", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ a: link.a, b: link.b }),
      });
      load(true);
    } catch (err) {
      button.disabled = false;
      P.showError(err.title || "Could not mark the pair.", err.detail || String(err));
    }
  }

  // a search started while the view is open (a file chosen, dropped or pasted, a URL or id entered) leaves it
  const leave = () => {
    if (isOpen()) history.pushState(null, "", location.pathname + location.search);
    if (!view.hidden) show(false);
  };
  $("file").addEventListener("change", leave, true);
  $("url-form").addEventListener("submit", leave, true);
  window.addEventListener("drop", leave, true);
  document.addEventListener("paste", (e) => {
    if (!(e.target instanceof HTMLInputElement) && !(e.target instanceof HTMLTextAreaElement)) leave();
  }, true);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    load(true);
  });
  more.addEventListener("click", () => load(false));
  window.addEventListener("hashchange", () => show(isOpen()));
  P.ready.then(() => {
    if (isOpen()) show(true);
  });
})();
