// PicTrace's page: one query at a time against this API's POST /search, rendered as a grid.
// Plain JavaScript, no dependencies, every request relative to the page (so a path prefix works).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    status: $("status"),
    drop: $("drop"),
    overlay: $("drop-overlay"),
    file: $("file"),
    form: $("url-form"),
    url: $("url"),
    topK: $("top-k"),
    error: $("error"),
    errorTitle: $("error-title"),
    errorDetail: $("error-detail"),
    errorClose: $("error-close"),
    query: $("query"),
    queryImg: $("query-img"),
    queryCaption: $("query-caption"),
    summary: $("summary"),
    timings: $("timings"),
    model: $("model"),
    results: $("results"),
    compare: $("compare"),
    compareTitle: $("compare-title"),
    compareVerdict: $("compare-verdict"),
    compareFacts: $("compare-facts"),
    compareFigure: $("compare-figure"),
    compareOpen: $("compare-open"),
    compareClose: $("compare-close"),
  };

  const ID_RE = /^[0-9a-f]{64}$/;
  const STAGES = [
    ["decode", "#64748b"],
    ["embed", "#2457d6"],
    ["refresh", "#0891b2"],
    ["scan", "#0e9f6e"],
    ["fetch", "#d97706"],
    ["rerank", "#7c3aed"],
  ];
  const SIGNALS = [
    ["cosine", "var(--cosine)"],
    ["ssim", "var(--ssim)"],
    ["orb", "var(--orb)"],
    ["final", "var(--final)"],
  ];
  let current = 0; // the newest search; answers to older ones are dropped
  let queryObjectUrl = null;
  let lastQuery = null; // {kind, value} of the search on screen: what "compare" sends again
  let comparing = 0; // the newest comparison; answers to older ones are dropped
  let pictureUrl = null;
  const SVG = "http://www.w3.org/2000/svg";

  // The id of an image is the SHA-256 of its bytes: computed here, it marks the result that is the very same file.
  async function sha256(blob) {
    if (!window.crypto || !crypto.subtle) return null; // only in secure contexts (https, localhost)
    try {
      const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
      return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "style") node.setAttribute("style", value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const basename = (key) => key.split("/").pop() || key;
  const fmt = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "–");
  const pct = (x) => `${Math.max(0, Math.min(100, x * 100)).toFixed(1)}%`;

  function bytes(n) {
    if (typeof n !== "number") return "";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function ms(x) {
    if (typeof x !== "number") return "–";
    return x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`;
  }

  // An <img> that falls back to the API's JPEG thumbnail (fallback) when the browser cannot show the original (TIFF),
  // and to a labelled placeholder when neither loads (an expired link, a deleted image).
  function picture(src, alt, whyNot, fallback) {
    const placeholder = () => el("div", { class: "noimg" }, whyNot || "no preview");
    if (!src && !fallback) return placeholder();
    const img = el("img", { alt, loading: "lazy", decoding: "async" });
    if (src) img.src = src;
    img.addEventListener("error", () => {
      if (fallback && img.dataset.fallback !== "tried") {
        img.dataset.fallback = "tried";
        showFallback(img, fallback);
      } else img.replaceWith(placeholder());
    });
    if (!src && fallback) {
      img.dataset.fallback = "tried";
      showFallback(img, fallback);
    }
    return img;
  }

  // The API's thumbnail into an <img>: as a plain link without sign-in; signed in, fetched with the token (an <img>
  // cannot send it) and shown from a blob.
  async function showFallback(img, fallback) {
    if (auth.mode !== "cognito") {
      img.src = fallback;
      return;
    }
    try {
      const response = await authorized(fallback);
      if (!response.ok) throw new Error(String(response.status));
      img.src = URL.createObjectURL(await response.blob());
    } catch {
      img.dispatchEvent(new Event("error"));
    }
  }

  // Browsers show JPEG, PNG, WebP and BMP, not TIFF: those go straight to the thumbnail.
  const browserShows = (key) => !/\.tiff?$/i.test(key || "");

  // The verdict of a result: "copy" (match true), "not a copy" (match false), nothing without one (null or absent).
  function verdictBadge(match) {
    if (match === true) return el("span", { class: "verdict copy", title: "judged a copy of the query" }, "copy");
    if (match === false) return el("span", { class: "verdict not-copy", title: "judged not a copy of the query" }, "not a copy");
    return null;
  }

  // ------------------------------------------------------------------ errors
  // Every error the API returns is {"detail": "...", "error": "<type>"} with a 4xx/5xx status;
  // FastAPI's own parameter validation answers 422 with a list of problems in "detail".
  const TITLES = {
    400: "The request was not understood.",
    401: "Not signed in: reload the page to sign in.",
    403: "This API does not let you in.",
    404: "Not found.",
    409: "The index was busy; try again.",
    413: "Too large.",
    422: "That is not an image PicTrace can read.",
    429: "Too many searches at once; try again.",
    500: "The server failed.",
    502: "The server could not be reached.",
    503: "The service is not ready.",
    504: "The server took too long.",
  };
  const TYPE_TITLES = {
    FetchError: "Could not fetch that URL.",
    ImageTooLarge: "Too large.",
    InvalidImage: "That is not an image PicTrace can read.",
    NotFound: "Not found.",
    BadRequest: "The request was not understood.",
    RequestValidationError: "The request was not understood.",
    InternalError: "The server failed.",
    ConflictError: "The index was busy; try again.",
    ConfigError: "The service is misconfigured.",
    ModelMismatch: "The service's model does not match its configuration.",
    WeightsUnavailable: "The service's model weights are unavailable.",
    UpstreamError: "The image store could not be reached.",
  };

  function showError(title, detail) {
    els.errorTitle.textContent = title;
    els.errorDetail.textContent = detail || "";
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
  }

  async function apiError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    let detail = "";
    if (body && typeof body.detail === "string") detail = body.detail;
    else if (body && Array.isArray(body.detail)) {
      detail = body.detail
        .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`)
        .join("; ");
    } else detail = `HTTP ${response.status} ${response.statusText}`.trim();
    const type = body && typeof body.error === "string" ? body.error : "";
    const title = TYPE_TITLES[type] || TITLES[response.status] || `The request failed (HTTP ${response.status}).`;
    return { title, detail, status: response.status, type };
  }


  // ------------------------------------------------------------------ sign-in
  // GET auth/config (public) says how: "none" (a local stack, or a stack deployed with ApiAuth=NONE) needs nothing;
  // "cognito" is the stack's user pool: its hosted UI (authorization code + PKCE), the tokens in sessionStorage, the
  // access token sent as a bearer token on every API call, refreshed before it expires, or a new sign-in.
  const auth = { mode: "none", config: null };
  const TOKENS = "pictrace.tokens";
  const VERIFIER = "pictrace.pkce";
  const here = () => location.origin + location.pathname;
  const LOOPBACK = ["localhost", "127.0.0.1", "[::1]"];
  // what the page says where it does not sign in
  const AUTH_LINES = {
    none: () =>
      LOOPBACK.includes(location.hostname)
        ? "local stack: no sign-in"
        : "no sign-in (ApiAuth=NONE): anyone with this URL can search",
    iam: () => "this API takes SigV4-signed calls only (ApiAuth=IAM): use the CLI or an AWS SDK",
    jwt: () => "this API takes your identity provider's tokens only (ApiAuth=JWT)",
  };
  const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  async function tokenRequest(params) {
    const response = await fetch(`${auth.config.domain}/oauth2/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: auth.config.client_id, ...params }),
    });
    if (!response.ok) throw { title: "Sign-in failed.", detail: `the user pool answered HTTP ${response.status}` };
    const t = await response.json();
    const old = JSON.parse(sessionStorage.getItem(TOKENS) || "{}");
    const tokens = {
      access: t.access_token,
      refresh: t.refresh_token || old.refresh,
      expires: Date.now() + (Number(t.expires_in) || 3600) * 1000,
    };
    sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
    return tokens;
  }

  async function signIn() {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    sessionStorage.setItem(VERIFIER, verifier);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const query = new URLSearchParams({
      response_type: "code",
      client_id: auth.config.client_id,
      redirect_uri: here(),
      scope: "openid email profile",
      code_challenge_method: "S256",
      code_challenge: challenge,
    });
    location.assign(`${auth.config.domain}/oauth2/authorize?${query}`);
  }

  function signOut() {
    sessionStorage.removeItem(TOKENS);
    const query = new URLSearchParams({ client_id: auth.config.client_id, logout_uri: here() });
    location.assign(`${auth.config.domain}/logout?${query}`);
  }

  // The access token to send, refreshed when it is about to expire; null where no sign-in is needed.
  async function accessToken() {
    if (auth.mode !== "cognito") return null;
    let tokens = JSON.parse(sessionStorage.getItem(TOKENS) || "null");
    if (tokens && tokens.expires - Date.now() < 60000 && tokens.refresh) {
      try {
        tokens = await tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh });
      } catch {
        tokens = null;
      }
    }
    if (!tokens || tokens.expires <= Date.now()) {
      await signIn();
      throw { title: "Signing in…", detail: "you are sent to the sign-in page" };
    }
    return tokens.access;
  }

  // fetch with the bearer token where the API needs one; a token the API refuses (revoked, or a clock off) is
  // refreshed, or the user signed in again, once
  async function authorized(path, init) {
    const send = async () => {
      const token = await accessToken();
      if (!token) return fetch(path, init);
      const headers = new Headers((init && init.headers) || {});
      headers.set("authorization", `Bearer ${token}`);
      return fetch(path, { ...(init || {}), headers });
    };
    const response = await send();
    if (response.status !== 401 || auth.mode !== "cognito") return response;
    const tokens = JSON.parse(sessionStorage.getItem(TOKENS) || "null");
    if (tokens) sessionStorage.setItem(TOKENS, JSON.stringify({ ...tokens, expires: 0 }));
    return send();
  }

  // Where the page learns how to sign in, finishes a sign-in the hosted UI sent back, and says who is signed in.
  async function startAuth() {
    const response = await fetch("auth/config");
    auth.config = response.ok ? await response.json() : { mode: "none" };
    auth.mode = auth.config.mode;
    const line = $("auth");
    if (auth.mode !== "cognito") {
      line.replaceChildren(AUTH_LINES[auth.mode] ? AUTH_LINES[auth.mode]() : "");
      return;
    }
    const params = new URLSearchParams(location.search);
    if (params.get("code")) {
      await tokenRequest({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: here(),
        code_verifier: sessionStorage.getItem(VERIFIER) || "",
      });
      sessionStorage.removeItem(VERIFIER);
      history.replaceState(null, "", here() + location.hash);
    }
    const button = el("button", { type: "button", class: "link" }, "sign out");
    button.addEventListener("click", signOut);
    line.replaceChildren("signed in · ", button);
    await accessToken();
  }

  // ------------------------------------------------------------------ the API
  async function api(path, init) {
    let response;
    try {
      response = await authorized(path, init);
    } catch (exc) {
      if (exc && exc.title) throw exc;
      throw { title: "Cannot reach the PicTrace API.", detail: `${exc.message || exc}. Is the server running?` };
    }
    if (!response.ok) throw await apiError(response);
    try {
      return await response.json();
    } catch {
      throw { title: "The API sent an answer this page does not understand.", detail: `HTTP ${response.status}` };
    }
  }

  async function loadHealth() {
    try {
      const h = await api("health");
      renderStatus(h.indexed, h.weights, h.backend, h.version);
    } catch (err) {
      els.status.replaceChildren(el("span", { class: "bad" }, `${err.title} ${err.detail || ""}`));
    }
  }

  function renderStatus(indexed, weights, backend, version) {
    const random = typeof weights === "string" && weights.startsWith("random:");
    // /health reports what its container has loaded so far, which is 0 before its first search: say nothing then
    const count = indexed ? [el("b", {}, String(indexed)), ` image${indexed === 1 ? "" : "s"} indexed · `] : [];
    els.status.replaceChildren(
      ...count,
      "weights ",
      el(
        "span",
        {
          class: "badge",
          title: random
            ? "seeded random weights: finds near-duplicates (resized, cropped, recompressed) but has no ImageNet semantics"
            : "the model's weights",
        },
        weights
      ),
      backend ? ` · ${backend}` : "",
      version ? ` · v${version}` : ""
    );
  }

  // ------------------------------------------------------------------ searching
  // kind: "file" (a File/Blob), "url" (a string) or "id" (64 hex characters); preview: {src, caption}
  async function search(kind, value, preview) {
    const token = ++current;
    lastQuery = null;
    clearError();
    const topK = Number(els.topK.value) || 10;
    let init;
    if (kind === "file") {
      const form = new FormData();
      form.append("file", value, value.name || "pasted-image");
      init = { method: "POST", body: form };
    } else {
      const body = kind === "url" ? { url: value, top_k: topK } : { id: value, top_k: topK };
      init = { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
    }
    showQuery(preview);
    document.body.classList.remove("fresh");
    document.body.classList.add("busy");
    els.summary.replaceChildren(el("span", { class: "spinner" }), "Searching…");
    try {
      const [answer, same] = await Promise.all([
        api(kind === "file" ? `search?top_k=${topK}` : "search", init),
        kind === "file" ? sha256(value) : Promise.resolve(kind === "id" ? value : null),
      ]);
      if (token !== current) return;
      lastQuery = { kind, value };
      render(answer, kind, value, same);
    } catch (err) {
      if (token !== current) return;
      els.query.hidden = true;
      els.results.replaceChildren();
      const about = preview && preview.caption ? ` (query: ${preview.caption})` : "";
      showError(err.title || "Something went wrong.", `${err.detail || String(err)}${about}`);
    } finally {
      if (token === current) document.body.classList.remove("busy");
    }
  }

  function showQuery(preview) {
    els.query.hidden = false;
    const figure = els.queryImg.parentElement;
    const holder = figure.querySelector(".noimg");
    if (holder) holder.replaceWith(els.queryImg);
    if (preview.src) {
      els.queryImg.hidden = false;
      els.queryImg.src = preview.src;
      els.queryImg.onerror = () => {
        els.queryImg.hidden = true;
        els.queryImg.after(el("div", { class: "noimg" }, "your browser cannot show this one"));
        els.queryImg.onerror = null;
      };
    } else {
      els.queryImg.hidden = true;
      els.queryImg.after(el("div", { class: "noimg" }, "no preview"));
    }
    els.queryCaption.textContent = preview.caption || "";
  }

  function render(answer, kind, value, sameId) {
    const q = answer.query || {};
    const results = answer.results || [];
    const described =
      q.format !== undefined
        ? `${String(q.format).toUpperCase()} · ${q.width}×${q.height} · ${bytes(q.bytes)}`
        : `${q.keys && q.keys.length ? basename(q.keys[0]) : `${String(q.id || value).slice(0, 12)}…`} (indexed)`;
    if (kind === "id" && q.keys && q.keys.length) els.queryCaption.textContent = q.keys.join(", ");
    els.summary.replaceChildren(
      results.length
        ? el("span", {}, el("b", {}, String(results.length)), ` result${results.length === 1 ? "" : "s"} of `,
            el("b", {}, String(answer.indexed ?? "—")), " indexed, best first · query: ", described)
        : el("span", {}, `No results: ${answer.indexed ? "nothing matched" : "the index is empty"} · query: ${described}`)
    );
    renderTimings(answer.timings_ms || {});
    els.model.replaceChildren(
      "model weights ",
      el("span", { class: "badge" }, answer.weights),
      ` · backend ${answer.backend} · final = weighted sum of cosine, ssim and orb; click a result to search with it`
    );
    renderStatus(answer.indexed, answer.weights, answer.backend);
    if (kind === "id" && els.queryImg.hidden) {
      const self = results.find((hit) => hit.id === value);
      if (self && self.url) showQuery({ src: self.url, caption: self.keys.join(", ") });
    }
    els.results.replaceChildren(
      ...(results.length
        ? results.map((hit, i) => card(hit, i + 1, hit.id === sameId))
        : [el("div", { class: "empty" }, answer.indexed ? "No indexed image is similar enough." :
            "The index is empty: add images under the bucket's images/ prefix (or run `pictrace ingest FOLDER`).")])
    );
  }

  function renderTimings(t) {
    const total = typeof t.total === "number" ? t.total : STAGES.reduce((s, [k]) => s + (t[k] || 0), 0);
    const known = STAGES.filter(([k]) => typeof t[k] === "number");
    const bar = el(
      "div",
      { class: "timings-bar", title: `total ${ms(total)}` },
      known.map(([k, color]) =>
        el("span", { style: `width:${(100 * t[k]) / Math.max(total, 0.001)}%;background:${color}`, title: `${k} ${ms(t[k])}` })
      )
    );
    const legend = el(
      "div",
      { class: "timings-legend" },
      known.map(([k, color]) => el("span", {}, el("i", { style: `background:${color}` }), `${k} `, el("b", {}, ms(t[k])))),
      el("span", {}, "total ", el("b", {}, ms(total)))
    );
    els.timings.replaceChildren(bar, legend);
  }

  function card(hit, rank, same) {
    const s = hit.scores || {};
    const key = (hit.keys && hit.keys[0]) || hit.id;
    const more = hit.keys && hit.keys.length > 1 ? el("span", { class: "more" }, ` +${hit.keys.length - 1} more`) : null;
    const rows = SIGNALS.map(([name, color]) => [
      el("span", { class: `label${name === "final" ? " final-row" : ""}` }, name),
      el("span", { class: "bar" }, el("span", { style: `width:${pct(s[name] || 0)};background:${color}` })),
      el(
        "span",
        { class: `value${name === "final" ? " final-row" : ""}`, title: name === "orb" ? `${s.orb_matches} matches` : null },
        fmt(s[name])
      ),
    ]);
    const compareButton = el(
      "button",
      {
        type: "button",
        class: "compare-button",
        title: "show the matched keypoints and where the query sits in this image",
        "aria-haspopup": "dialog",
        onclick: (e) => {
          e.stopPropagation();
          openCompare(hit, node);
        },
        onkeydown: (e) => e.stopPropagation(), // Enter/Space press the button, not the card
      },
      "compare"
    );
    const node = el(
      "article",
      {
        class: `card${same ? " same" : ""}`,
        tabindex: "0",
        role: "button",
        "data-id": hit.id,
        "data-rank": String(rank),
        title: `Search with ${key}\n${hit.keys.join("\n")}\nid ${hit.id}`,
      },
      el(
        "div",
        { class: "thumb" },
        picture(
          browserShows(key) ? hit.url : null,
          key,
          `no preview (${(key.split(".").pop() || "").toUpperCase()})`,
          `thumbnail/${hit.id}`
        ),
        el("span", { class: "rank" }, `#${rank}`),
        el("span", { class: "sim" }, `${Number(hit.similarity).toFixed(1)}%`),
        same ? el("span", { class: "same-badge", title: "the same bytes as the query (same SHA-256)" }, "same file") : null,
        verdictBadge(hit.match)
      ),
      el(
        "div",
        { class: "card-body" },
        el("div", { class: "key" }, basename(key), more),
        el("div", { class: "scores" }, rows),
        el(
          "div",
          { class: "card-foot" },
          el(
            "span",
            { class: "facts", title: "rank in the cosine shortlist (before the rerank) · ORB keypoints matched" },
            `cos #${hit.rank_cosine} · ${s.orb_matches ?? "–"} matches`
          ),
          compareButton,
          hit.url
            ? el(
                "a",
                { href: hit.url, target: "_blank", rel: "noopener", title: "open the original", onclick: (e) => e.stopPropagation() },
                "open ↗"
              )
            : null
        )
      )
    );
    const go = () => byId(hit.id, { src: hit.url, caption: hit.keys.join(", ") });
    node.addEventListener("click", go);
    node.addEventListener("keydown", (e) => {
      if (e.target !== node) return; // keys pressed on the card's own controls are theirs
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        go();
      }
    });
    return node;
  }


  // ------------------------------------------------------------------ comparing
  // POST /compare with the query on screen and one result: the JSON (verdict, matches, region), then the picture.
  function compareInit(accept) {
    const { kind, value } = lastQuery;
    if (kind === "file") {
      const form = new FormData();
      form.append("file", value, value.name || "pasted-image");
      return { method: "POST", body: form, headers: { accept } };
    }
    const body = kind === "url" ? { url: value } : { id: value };
    return { method: "POST", headers: { "content-type": "application/json", accept }, body: JSON.stringify(body) };
  }

  async function openCompare(hit, card) {
    if (!lastQuery) return;
    const token = ++comparing;
    const key = (hit.keys && hit.keys[0]) || hit.id;
    els.compareTitle.textContent = `Query → ${basename(key)}`;
    els.compareVerdict.replaceChildren(el("span", { class: "spinner" }), "Comparing…");
    els.compareFacts.replaceChildren();
    els.compareFigure.replaceChildren(el("div", { class: "compare-wait" }, "drawing the matched keypoints…"));
    els.compareOpen.hidden = true;
    els.compare.dataset.id = hit.id;
    if (!els.compare.open) els.compare.showModal();
    const path = `compare?target=${hit.id}`;
    try {
      const [answer, [blob, region]] = await Promise.all([api(path, compareInit("application/json")), pictureOf(path)]);
      if (token !== comparing) return;
      showComparison(answer, blob, key);
      // the picture's region is exact (it decoded the original); the JSON's may assume no trimmed border
      outlineRegion(card, answer, region && !answer.exact ? region : answer.region);
    } catch (err) {
      if (token !== comparing) return;
      els.compareVerdict.replaceChildren(el("span", { class: "bad" }, err.title || "The comparison failed."));
      els.compareFacts.replaceChildren(err.detail || String(err));
      els.compareFigure.replaceChildren();
    }
  }

  async function pictureOf(path) {
    let response;
    try {
      response = await authorized(`${path}&format=png`, compareInit("image/png"));
    } catch (exc) {
      if (exc && exc.title) throw exc;
      throw { title: "Cannot reach the PicTrace API.", detail: `${exc.message || exc}. Is the server running?` };
    }
    if (!response.ok) throw await apiError(response);
    const corners = (response.headers.get("x-pictrace-region") || "").trim();
    const region = corners ? corners.split(/\s+/).map((c) => c.split(",").map(Number)) : null;
    return [await response.blob(), region];
  }

  function showComparison(answer, blob, key) {
    const t = answer.transform;
    const badge = verdictBadge(answer.match);
    els.compareVerdict.replaceChildren(
      ...(badge ? [badge, " "] : []),
      el("b", {}, `${Number(answer.similarity).toFixed(1)}%`),
      " similar · ",
      el("b", {}, String(answer.inliers)),
      ` of ${answer.matches} ORB matches agree on one affine transform`
    );
    const facts = [];
    if (t) {
      const turn = Math.round(t.rotation_degrees);
      facts.push(turn ? `query turned ${turn}° counter-clockwise` : "query not turned", `scale ${t.scale.toFixed(2)}`);
      if (t.mirrored) facts.push("mirrored");
    }
    const box = answer.region_box;
    const size = answer.indexed || {};
    const inside = answer.inset ? answer.original_region_box : null;
    const query = answer.query || {};
    if (inside) {
      facts.push(
        `the original sits at x ${Math.round(inside[0])}–${Math.round(inside[2])}, y ${Math.round(inside[1])}–${Math.round(inside[3])} of the query's ${query.width}×${query.height}`
      );
    }
    facts.push(
      box
        ? `matched region x ${Math.round(box[0])}–${Math.round(box[2])}, y ${Math.round(box[1])}–${Math.round(box[3])} of ${size.width}×${size.height}`
        : answer.degenerate
          ? "no matched region: the only transform the keypoints agree on collapses the query (chance matches)"
          : "no matched region: the keypoints agree on no transform"
    );
    facts.push(answer.explain);
    els.compareFacts.replaceChildren(facts.filter(Boolean).join(" · "));
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    pictureUrl = URL.createObjectURL(blob);
    els.compareFigure.replaceChildren(
      el("img", {
        src: pictureUrl,
        alt: `The query (left) and ${basename(key)} (right) side by side, matched keypoints joined by lines, the matched region outlined`,
      })
    );
    els.compareOpen.href = pictureUrl;
    els.compareOpen.hidden = false;
  }

  // The matched region drawn over the result's thumbnail (an SVG in the image's own pixels, cropped like the
  // thumbnail: object-fit cover = preserveAspectRatio slice).
  function outlineRegion(card, answer, region) {
    const thumb = card && card.querySelector(".thumb");
    const size = answer.indexed || {};
    if (!thumb || !region || !size.width || !size.height) return;
    thumb.querySelector("svg.region")?.remove();
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "region");
    svg.setAttribute("viewBox", `0 0 ${size.width} ${size.height}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid slice");
    svg.setAttribute("aria-label", "where the query sits in this image");
    const polygon = document.createElementNS(SVG, "polygon");
    polygon.setAttribute("points", region.map(([x, y]) => `${x},${y}`).join(" "));
    polygon.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(polygon);
    thumb.append(svg);
  }

  els.compareClose.addEventListener("click", () => els.compare.close());
  els.compare.addEventListener("click", (e) => {
    if (e.target === els.compare) els.compare.close(); // a click on the backdrop
  });
  els.compare.addEventListener("close", () => {
    comparing += 1;
    const card = els.results.querySelector(`.card[data-id="${els.compare.dataset.id}"] .compare-button`);
    if (card) card.focus();
  });

  // ------------------------------------------------------------------ the ways in
  function byFile(file) {
    if (queryObjectUrl) URL.revokeObjectURL(queryObjectUrl);
    queryObjectUrl = URL.createObjectURL(file);
    const caption = `${file.name || "pasted image"}${file.size ? ` · ${bytes(file.size)}` : ""}`;
    search("file", file, { src: queryObjectUrl, caption });
  }

  function byId(id, preview) {
    if (location.hash !== `#id=${id}`) history.pushState(null, "", `#id=${id}`);
    search("id", id, preview || { src: null, caption: id });
  }

  function byText(text) {
    const value = (text || "").trim();
    if (!value) {
      showError("Nothing to search for.", "Choose, drop or paste an image, or type an image URL or id.");
      return;
    }
    if (ID_RE.test(value.toLowerCase())) {
      byId(value.toLowerCase());
      return;
    }
    if (!/^https?:\/\//i.test(value)) {
      showError("That is not an image URL.", `"${value.slice(0, 200)}" should start with http:// or https://, or be a 64-character image id.`);
      return;
    }
    search("url", value, { src: value, caption: value });
  }

  els.file.addEventListener("change", () => {
    const file = els.file.files && els.file.files[0];
    if (file) byFile(file);
    els.file.value = ""; // choosing the same file again searches again
  });

  els.form.addEventListener("submit", (e) => {
    e.preventDefault();
    byText(els.url.value);
  });

  els.errorClose.addEventListener("click", clearError);

  // Drag and drop anywhere on the page: a file, or a link/image dragged from another page.
  let dragDepth = 0;
  const hasPayload = (e) => e.dataTransfer && [...e.dataTransfer.types].some((t) => t === "Files" || t === "text/uri-list");
  window.addEventListener("dragenter", (e) => {
    if (!hasPayload(e)) return;
    e.preventDefault();
    dragDepth += 1;
    els.overlay.hidden = false;
    document.body.classList.add("dragging");
  });
  window.addEventListener("dragover", (e) => {
    if (hasPayload(e)) e.preventDefault();
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) endDrag();
  });
  function endDrag() {
    dragDepth = 0;
    els.overlay.hidden = true;
    document.body.classList.remove("dragging");
  }
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    endDrag();
    const dt = e.dataTransfer;
    if (!dt) return;
    if (dt.files && dt.files.length) {
      byFile(dt.files[0]);
      return;
    }
    const link = (dt.getData("text/uri-list") || dt.getData("text/plain") || "").split(/\r?\n/).find((l) => l && !l.startsWith("#"));
    if (link) {
      els.url.value = link;
      byText(link);
    } else showError("Nothing to search for in what was dropped.", "Drop an image file, or an image dragged from another page.");
  });

  // Paste: an image from the clipboard searches at once; text pasted outside the URL field is taken as a URL or id.
  document.addEventListener("paste", (e) => {
    const cd = e.clipboardData;
    if (!cd) return;
    const file = [...(cd.files || [])].find((f) => f.type.startsWith("image/")) ||
      [...(cd.items || [])].filter((i) => i.kind === "file").map((i) => i.getAsFile()).find(Boolean);
    if (file) {
      e.preventDefault();
      byFile(file);
      return;
    }
    const inField = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    if (inField) return; // ordinary paste into the field; Enter searches
    const text = cd.getData("text/plain");
    e.preventDefault();
    if (text && text.trim()) {
      els.url.value = text.trim();
      byText(text);
    } else showError("The clipboard holds no image.", "Copy an image (or an image's address) and paste again.");
  });

  // #id=<id> in the address: shareable, and Back/Forward walk through the searches made by clicking results.
  function fromHash() {
    const m = /^#id=([0-9a-f]{64})$/.exec(location.hash);
    if (m) search("id", m[1], { src: null, caption: m[1] });
  }
  window.addEventListener("popstate", fromHash);

  // what the Duplicates view (duplicates.js) uses of the page; ready: once the page knows how to call the API
  window.PicTrace = {
    api,
    el,
    clearError,
    showError,
    basename,
    browserShows,
    picture,
    // the compare dialog for two indexed images: the first as the query, the second as the result
    compare: (queryId, hit) => {
      lastQuery = { kind: "id", value: queryId };
      return openCompare(hit, null);
    },
  };
  window.PicTrace.ready = startAuth()
    .catch((err) => showError(err.title || "Sign-in failed.", err.detail || String(err)))
    .finally(() => {
      loadHealth();
      fromHash();
    });
})();
