// The sandbox page: pick a sample patient and a service, see the hook request, send it with a
// signed JWT, render the cards as an EHR would and send feedback. No framework, no build step.
// Card text only ever reaches the DOM through textContent (see markdown.js).
(function () {
  "use strict";

  const KIND_SYSTEM = "https://cds.example.org/CodeSystem/card-kind";
  const $ = (id) => document.getElementById(id);
  const state = { config: null, patients: [], services: [] };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function api(path) {
    return new URL("sandbox/api/" + path, document.baseURI).href;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = kind || "";
  }

  function problemText(body, status) {
    if (body && body.resourceType === "OperationOutcome" && Array.isArray(body.issue)) {
      return body.issue.map((i) => i.diagnostics || i.code).join("; ");
    }
    return "HTTP " + status;
  }

  async function getJson(url, options) {
    const res = await fetch(url, options);
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (!res.ok) throw new Error(problemText(body, res.status));
    return body;
  }

  function currentPatient() {
    return state.patients.find((p) => p.id === $("patient").value);
  }

  // The selection is one service id, or "hook:<name>" for every service on that hook (as an EHR
  // calls them all when the hook fires).
  function currentServices() {
    const value = $("service").value;
    if (value.startsWith("hook:")) return state.services.filter((s) => s.hook === value.slice(5));
    return state.services.filter((s) => s.id === value);
  }

  function hookUrl(serviceId) {
    return state.config.baseUrl + "/cds-services/" + encodeURIComponent(serviceId);
  }

  // --- setup ---------------------------------------------------------------------------------
  function fillPatients() {
    const select = $("patient");
    select.replaceChildren();
    for (const p of state.patients) {
      const opt = el("option", p.title + " — " + p.name + " (" + p.id + ")");
      opt.value = p.id;
      select.appendChild(opt);
    }
  }

  function fillServices() {
    const select = $("service");
    select.replaceChildren();
    const hooks = [...new Set(state.services.map((s) => s.hook))];
    for (const hook of hooks) {
      const ids = state.services.filter((s) => s.hook === hook).map((s) => s.id);
      if (ids.length < 2) continue;
      const opt = el("option", "Every " + hook + " service, as an EHR calls them (" + ids.join(", ") + ")");
      opt.value = "hook:" + hook;
      select.appendChild(opt);
    }
    for (const s of state.services) {
      const opt = el("option", s.title + " — " + s.hook + " (" + s.id + ")");
      opt.value = s.id;
      select.appendChild(opt);
    }
  }

  function fillOrders() {
    const p = currentPatient();
    const box = $("orders");
    box.replaceChildren();
    if (!p.orders.length) {
      box.appendChild(el("p", "This patient has no stored draft orders; add some as JSON below.", "muted"));
    }
    p.orders.forEach((o, i) => {
      const label = el("label");
      const cb = el("input");
      cb.type = "checkbox";
      cb.value = o.id;
      cb.checked = i === 0;
      cb.addEventListener("change", () => build());
      label.appendChild(cb);
      label.appendChild(document.createTextNode(" " + o.label + " "));
      label.appendChild(el("code", o.id, "muted"));
      box.appendChild(label);
    });
  }

  function onPatientOrService() {
    const p = currentPatient();
    $("patient-description").textContent = p ? p.description : "";
    const services = currentServices();
    $("orders-panel").hidden = !services.some((s) => s.hook === "order-sign");
    fillOrders();
    return build();
  }

  // --- request ---------------------------------------------------------------------------------
  // The request textarea holds one request (one service) or {serviceId: request, ...}.
  function requestsFromEditor() {
    const parsed = JSON.parse($("request-json").value);
    const ids = currentServices().map((s) => s.id);
    return parsed && typeof parsed.hook === "string" ? { [ids[0]]: parsed } : parsed;
  }

  function showRequests(requests) {
    const ids = Object.keys(requests);
    $("request-json").value = JSON.stringify(ids.length === 1 ? requests[ids[0]] : requests, null, 2);
    $("hook-url").textContent = ids.map((id) => hookUrl(id)).join("  ·  ");
  }

  let buildSeq = 0;

  async function build(draftOrders) {
    const services = currentServices();
    const p = currentPatient();
    if (!services.length || !p) return;
    const seq = ++buildSeq; // only the newest build may write its result (selections change fast)
    const orders = Array.from(document.querySelectorAll("#orders input:checked")).map((c) => c.value);
    try {
      const requests = {};
      for (const s of services) {
        const body = { patient: p.id, service: s.id, prefetch: $("include-prefetch").checked };
        if (draftOrders) body.draftOrders = draftOrders;
        else body.orders = orders;
        const built = await getJson(api("request"), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        requests[s.id] = built.request;
      }
      if (seq !== buildSeq) return;
      showRequests(requests);
      const signing = Object.values(requests).find((r) => r.context.draftOrders);
      const drafts = signing ? (signing.context.draftOrders.entry || []).map((e) => e.resource) : [];
      $("orders-json").value = JSON.stringify(drafts, null, 2);
      setStatus("Request ready for " + p.id + " → " + services.map((s) => s.id).join(", ") + ".");
    } catch (e) {
      if (seq === buildSeq) setStatus("Cannot build the request: " + e.message, "error");
    }
  }

  async function token(aud) {
    if (state.config.dev) {
      const t = await getJson(api("token"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ aud }),
      });
      return t.token;
    }
    const pasted = $("token").value.trim();
    if (!pasted) throw new Error("paste a bearer token first (this service is not in development mode)");
    return pasted;
  }

  async function callService(serviceId, request) {
    const url = hookUrl(serviceId);
    const jwt = await token(url);
    const t0 = performance.now();
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", Authorization: "Bearer " + jwt },
      body: JSON.stringify(request),
    });
    const text = await res.text();
    const ms = Math.round(performance.now() - t0);
    let body = text;
    try {
      body = JSON.parse(text);
    } catch (e) {
      body = text;
    }
    return { service: serviceId, status: res.status, ok: res.ok, ms, body };
  }

  async function send() {
    let requests;
    try {
      requests = requestsFromEditor();
    } catch (e) {
      setStatus("The request is not valid JSON: " + e.message, "error");
      return;
    }
    const ids = Object.keys(requests);
    $("send").disabled = true;
    setStatus("Sending to " + ids.join(", ") + " …");
    try {
      // An EHR calls the services of a hook in parallel; so does the sandbox.
      const answers = await Promise.all(ids.map((id) => callService(id, requests[id])));
      $("elapsed").textContent =
        "(" + answers.map((a) => (ids.length > 1 ? a.service + ": " : "") + "HTTP " + a.status + ", " + a.ms + " ms").join("; ") + ")";
      $("elapsed").dataset.ms = String(Math.max(...answers.map((a) => a.ms)));
      const raw = ids.length === 1 ? answers[0].body : Object.fromEntries(answers.map((a) => [a.service, a.body]));
      $("raw-response").textContent = typeof raw === "string" ? raw : JSON.stringify(raw, null, 2);
      renderAnswers(answers);
      const failed = answers.filter((a) => !(a.ok && a.body && Array.isArray(a.body.cards)));
      const cards = answers.reduce((n, a) => n + (a.ok && a.body && Array.isArray(a.body.cards) ? a.body.cards.length : 0), 0);
      const timing = answers.map((a) => a.service + " HTTP " + a.status + " in " + a.ms + " ms").join("; ");
      if (failed.length) {
        const why = failed.map((a) => a.service + ": " + problemText(a.body, a.status)).join("; ");
        setStatus(timing + " — " + why, "error");
      } else {
        setStatus(timing + ": " + cards + " card(s).", "ok");
      }
    } catch (e) {
      setStatus("Could not send the hook: " + e.message, "error");
    } finally {
      $("send").disabled = false;
    }
  }

  // --- cards -----------------------------------------------------------------------------------
  function renderAnswers(answers) {
    const box = $("cards");
    box.replaceChildren();
    let count = 0;
    let errors = 0;
    for (const a of answers) {
      if (!(a.ok && a.body && Array.isArray(a.body.cards))) {
        errors += 1;
        box.appendChild(el("p", a.service + ": " + problemText(a.body, a.status), "error"));
        continue;
      }
      count += a.body.cards.length;
      a.body.cards.forEach((card) => box.appendChild(renderCard(card, a.service)));
      for (const action of a.body.systemActions || []) {
        box.appendChild(el("p", a.service + " system action: " + action.type + " — " + (action.description || ""), "muted"));
      }
    }
    if (!count && !errors) box.appendChild(el("p", "No cards: nothing to say for this patient.", "muted"));
    box.dataset.state = errors ? "error" : count ? "cards" : "none";
  }

  function kindOf(card) {
    const topic = (card.source || {}).topic;
    return topic && topic.system === KIND_SYSTEM ? topic.code : "";
  }

  function renderCard(card, serviceId) {
    const indicator = ["info", "warning", "critical"].includes(card.indicator) ? card.indicator : "info";
    const node = el("article", null, "card indicator-" + indicator);
    node.dataset.uuid = card.uuid || "";
    node.dataset.service = serviceId;
    node.dataset.indicator = String(card.indicator);
    node.dataset.kind = kindOf(card);
    const summary = el("p", null, "summary");
    summary.appendChild(el("span", indicator, "badge"));
    summary.appendChild(document.createTextNode(String(card.summary || "")));
    node.appendChild(summary);

    const source = card.source || {};
    const meta = el("p", null, "meta source");
    meta.appendChild(document.createTextNode(serviceId + " · Source: "));
    const srcUrl = source.url && window.CdsMarkdown.safeUrl(source.url);
    if (srcUrl) {
      const a = el("a", source.label);
      a.href = srcUrl;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      meta.appendChild(a);
    } else {
      meta.appendChild(document.createTextNode(String(source.label || "")));
    }
    if (source.topic) meta.appendChild(document.createTextNode(" · topic " + (source.topic.display || source.topic.code)));
    node.appendChild(meta);

    if (card.detail) {
      const detail = el("div", null, "detail");
      detail.appendChild(window.CdsMarkdown.render(card.detail));
      node.appendChild(detail);
    }

    const buttons = [];
    const outcome = el("p", null, "outcome");
    (card.suggestions || []).forEach((sug) => {
      const box = el("div", null, "suggestion" + (sug.isRecommended ? " recommended" : ""));
      box.appendChild(el("span", sug.label, "label"));
      const ul = el("ul", null, "actions");
      for (const action of sug.actions || []) {
        const li = el("li", action.type + ": " + (action.description || ""));
        li.dataset.actionType = action.type;
        if (action.resource) li.appendChild(el("code", " " + action.resource.resourceType, "muted"));
        if (action.resourceId) li.appendChild(el("code", " " + action.resourceId, "muted"));
        ul.appendChild(li);
      }
      box.appendChild(ul);
      const accept = el("button", "Accept: " + sug.label, "accept");
      accept.type = "button";
      accept.dataset.suggestion = sug.uuid || "";
      accept.addEventListener("click", () => acceptSuggestion(card, sug, serviceId, node, buttons, outcome));
      buttons.push(accept);
      box.appendChild(accept);
      node.appendChild(box);
    });
    if ((card.suggestions || []).length) {
      node.appendChild(el("p", "Selection: " + (card.selectionBehavior || "(missing selectionBehavior)"), "meta"));
    }

    for (const link of card.links || []) {
      const p = el("p", null, "meta link");
      const url = window.CdsMarkdown.safeUrl(link.url);
      if (link.type !== "smart" && url) {
        const a = el("a", link.label);
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        p.appendChild(document.createTextNode("Link: "));
        p.appendChild(a);
      } else {
        p.textContent = "Link (" + (link.type || "absolute") + "): " + link.label + " — " + link.url;
      }
      node.appendChild(p);
    }

    const override = el("div", null, "override");
    const reason = el("select");
    reason.setAttribute("aria-label", "Override reason");
    reason.appendChild(el("option", "(no reason given)"));
    (card.overrideReasons || []).forEach((r, i) => {
      const opt = el("option", r.display || r.code);
      opt.value = String(i);
      reason.appendChild(opt);
    });
    reason.firstChild.value = "";
    const comment = el("input");
    comment.type = "text";
    comment.placeholder = "Comment (optional)";
    comment.setAttribute("aria-label", "Override comment");
    const overrideButton = el("button", "Override", "override-button");
    overrideButton.type = "button";
    overrideButton.addEventListener("click", () => {
      const chosen = reason.value === "" ? null : card.overrideReasons[Number(reason.value)];
      const entry = { card: card.uuid, outcome: "overridden", outcomeTimestamp: new Date().toISOString() };
      if (chosen || comment.value.trim()) {
        entry.overrideReason = {};
        if (chosen) entry.overrideReason.reason = { system: chosen.system, code: chosen.code };
        if (comment.value.trim()) entry.overrideReason.userComment = comment.value.trim();
      }
      sendFeedback(serviceId, card, entry, node, buttons, outcome, "Overridden" + (chosen ? ": " + chosen.display : ""));
    });
    buttons.push(overrideButton);
    override.appendChild(reason);
    override.appendChild(comment);
    override.appendChild(overrideButton);
    node.appendChild(override);
    node.appendChild(outcome);
    return node;
  }

  // An EHR applies an accepted suggestion's actions to its draft orders; do the same to the
  // request so the clinician can sign again with the changed orders.
  function applyActions(actions) {
    let requests;
    try {
      requests = requestsFromEditor();
    } catch (e) {
      return false;
    }
    const ref = (r) => r.resourceType + "/" + r.id;
    let changed = false;
    let drafts = [];
    for (const request of Object.values(requests)) {
      const bundle = request.context && request.context.draftOrders;
      if (!bundle) continue;
      let entries = bundle.entry || [];
      for (const a of actions) {
        if (a.type === "delete" && a.resourceId) entries = entries.filter((e) => ref(e.resource) !== a.resourceId);
        if (a.type === "create" && a.resource) entries.push({ resource: a.resource });
        if (a.type === "update" && a.resource) {
          entries = entries.map((e) => (ref(e.resource) === ref(a.resource) ? { resource: a.resource } : e));
        }
      }
      if (entries.length) bundle.entry = entries;
      else delete bundle.entry;
      if (crypto.randomUUID) request.hookInstance = crypto.randomUUID();
      drafts = entries.map((e) => e.resource);
      changed = true;
    }
    if (!changed) return false;
    showRequests(requests);
    $("orders-json").value = JSON.stringify(drafts, null, 2);
    return true;
  }

  function acceptSuggestion(card, sug, serviceId, node, buttons, outcome) {
    const entry = {
      card: card.uuid,
      outcome: "accepted",
      acceptedSuggestions: [{ id: sug.uuid }],
      outcomeTimestamp: new Date().toISOString(),
    };
    const applied = applyActions(sug.actions || []);
    if (applied) setStatus("The accepted suggestion changed the draft orders: Send hook signs them again.", "ok");
    sendFeedback(serviceId, card, entry, node, buttons, outcome,
      "Accepted: " + sug.label + (applied ? " (actions applied to the draft orders)" : ""));
  }

  async function sendFeedback(serviceId, card, entry, node, buttons, outcome, label) {
    if (!card.uuid) {
      outcome.textContent = label + " — the card has no uuid, so no feedback is sent (spec).";
      return;
    }
    const url = hookUrl(serviceId) + "/feedback";
    buttons.forEach((b) => (b.disabled = true));
    const item = el("li", label + " → POST " + url + " …");
    $("feedback-log").appendChild(item);
    try {
      const jwt = await token(url);
      const t0 = performance.now();
      const res = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + jwt },
        body: JSON.stringify({ feedback: [entry] }),
      });
      const ms = Math.round(performance.now() - t0);
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        body = null;
      }
      const result = res.ok ? "HTTP " + res.status + " in " + ms + " ms" : "failed: " + problemText(body, res.status);
      item.textContent = label + " [" + String(card.summary) + "] → feedback " + result;
      item.dataset.status = String(res.status);
      item.dataset.outcome = entry.outcome;
      outcome.textContent = label + " — feedback " + result;
      outcome.dataset.status = String(res.status);
      if (res.ok) node.classList.add("done");
      else buttons.forEach((b) => (b.disabled = false));
    } catch (e) {
      item.textContent = label + " → feedback could not be sent: " + e.message;
      outcome.textContent = item.textContent;
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  // --- start -----------------------------------------------------------------------------------
  async function start() {
    try {
      state.config = await getJson(api("config"));
      state.services = state.config.services;
      state.patients = (await getJson(api("patients"))).patients;
    } catch (e) {
      setStatus("The sandbox API is not reachable: " + e.message, "error");
      return;
    }
    fillPatients();
    fillServices();
    const params = new URLSearchParams(location.search);
    if (params.get("patient")) $("patient").value = params.get("patient");
    if (params.get("service")) $("service").value = params.get("service");
    $("token-mode").textContent = state.config.dev
      ? "Development mode: each call carries a JWT signed with the local development key for its exact URL."
      : "Production settings: paste a JWT from a trusted client for each call; its aud must be the exact " +
        "URL called (feedback goes to …/feedback) and each token is accepted once.";
    $("token-paste").hidden = state.config.dev;
    $("patient").addEventListener("change", onPatientOrService);
    $("service").addEventListener("change", onPatientOrService);
    $("include-prefetch").addEventListener("change", () => build());
    $("build").addEventListener("click", () => build());
    $("send").addEventListener("click", send);
    $("orders-apply").addEventListener("click", () => {
      try {
        const orders = JSON.parse($("orders-json").value);
        if (!Array.isArray(orders)) throw new Error("expected a JSON list of resources");
        build(orders);
      } catch (e) {
        setStatus("Draft orders: " + e.message, "error");
      }
    });
    await onPatientOrService();
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
