// The Mangalm web chat: log in, ask, stream the answer, draw tables, charts, buttons and
// citations, and redraw the conversation after a reload.
//
// Every text that comes from the model, the database or the person is put on the page with
// textContent or as a text node, never as HTML: this is how the web channel escapes output.
"use strict";

(function () {
  const TOKEN_KEY = "mangalm.token";
  const MAX_TEXT = 4000;
  const PALETTE = ["#1b6ef3", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9"];

  const $ = (id) => document.getElementById(id);
  const views = { login: $("login-view"), chat: $("chat-view") };
  const log = $("log");
  const askBox = $("ask");
  const sendButton = $("send");
  let busy = false;

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // A random v4 UUID; crypto.randomUUID needs a secure context, getRandomValues does not.
  function newMessageId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
      hex.slice(20)].join("-");
  }

  function formatNumber(value) {
    return value.toLocaleString("en-IN", { maximumFractionDigits: 2 });
  }

  function token() {
    return localStorage.getItem(TOKEN_KEY);
  }

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail || "HTTP " + status);
      this.status = status;
      this.detail = detail;
    }
  }

  async function errorOf(response) {
    let detail = null;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail) && body.detail.length) detail = body.detail[0].msg;
    } catch (ignored) {
      // A body that is not JSON: the status says enough.
    }
    return new HttpError(response.status, detail);
  }

  async function api(path, options) {
    const headers = Object.assign({}, (options && options.headers) || {});
    if (token()) headers.Authorization = "Bearer " + token();
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  function politeMessage(error) {
    if (error instanceof HttpError) {
      if (error.status === 422) {
        return "That message could not be sent: it must be 1 to " + MAX_TEXT + " characters.";
      }
      if (error.status === 413) return "That message is too long to send.";
      if (error.status === 429) return "Too many messages at once. Please wait a moment.";
      // The server says what is unavailable (the sales database) in a sentence for people.
      if (error.status === 503 && error.detail) return error.detail;
      if (error.status >= 500) {
        return "The assistant is having trouble right now. Please try again in a minute.";
      }
    }
    if (error instanceof TypeError) {
      return "Could not reach the assistant. Check your connection and try again.";
    }
    return "Sorry, something went wrong. Please try again.";
  }

  // --- views --------------------------------------------------------------------------------

  function showLogin(message) {
    localStorage.removeItem(TOKEN_KEY);
    views.chat.hidden = true;
    views.login.hidden = false;
    $("who").hidden = true;
    log.replaceChildren();
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("email").focus();
  }

  async function showChat() {
    let me;
    try {
      me = await (await api("/api/me")).json();
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) {
        showLogin("Your session has ended. Please log in again.");
        return;
      }
      showLogin(politeMessage(error));
      return;
    }
    $("who-name").textContent = me.name + " · " + me.role;
    $("who").hidden = false;
    views.login.hidden = true;
    views.chat.hidden = false;
    await loadHistory();
    askBox.focus();
  }

  function handleAuthError(error) {
    if (error instanceof HttpError && error.status === 401) {
      showLogin("Your session has ended. Please log in again.");
      return true;
    }
    return false;
  }

  // --- rendering ----------------------------------------------------------------------------

  function scrollToEnd() {
    const last = log.lastElementChild;
    if (last) last.scrollIntoView({ block: "end" });
  }

  function addUserMessage(text, buttonLabel) {
    const item = el("li", "msg msg-user");
    const bubble = el("div", "bubble");
    if (buttonLabel) {
      bubble.classList.add("pressed");
      bubble.textContent = buttonLabel;
    } else {
      bubble.textContent = text;
    }
    item.append(bubble);
    log.append(item);
    $("empty").hidden = true;
    scrollToEnd();
    return item;
  }

  // An assistant message: a bubble whose text fills in as deltas arrive, then the extras.
  function addAssistantMessage() {
    const item = el("li", "msg msg-bot");
    const bubble = el("div", "bubble");
    const text = el("div", "text");
    const thinking = el("div", "thinking");
    thinking.setAttribute("role", "status");
    thinking.append(el("span", "dot"), el("span", "dot"), el("span", "dot"),
      el("span", "thinking-label", "Thinking…"));
    bubble.append(thinking, text);
    item.append(bubble);
    log.append(item);
    scrollToEnd();
    return {
      item,
      bubble,
      text,
      append(piece) {
        thinking.remove();
        text.append(document.createTextNode(piece));
        scrollToEnd();
      },
      fail(message) {
        thinking.remove();
        item.classList.add("msg-error");
        text.textContent = message;
        scrollToEnd();
      },
      done() {
        thinking.remove();
      },
    };
  }

  function renderTable(table) {
    const wrap = el("div", "table-wrap");
    const node = el("table", "data");
    if (table.title) node.append(el("caption", null, table.title));
    const head = el("thead");
    const headRow = el("tr");
    for (const column of table.columns) headRow.append(el("th", null, column));
    head.append(headRow);
    const body = el("tbody");
    for (const row of table.rows) {
      const tr = el("tr");
      row.forEach((cell, index) => {
        const numeric = typeof cell === "number";
        const td = el("td", numeric ? "num" : null,
          cell === null || cell === undefined ? "" : numeric ? formatNumber(cell) : cell);
        td.dataset.label = table.columns[index] || "";
        tr.append(td);
      });
      body.append(tr);
    }
    node.append(head, body);
    wrap.append(node);
    return wrap;
  }

  function renderChart(spec) {
    const figure = el("figure", "chart");
    const box = el("div", "chart-box");
    const canvas = el("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", spec.title);
    box.append(canvas);
    figure.append(box);
    if (typeof window.Chart !== "function") {
      figure.append(el("figcaption", "muted", spec.title + " (charts could not be loaded)"));
      return figure;
    }
    const unit = spec.unit ? spec.unit + " " : "";
    const datasets = Object.entries(spec.series).map(([name, values], index) => ({
      label: name,
      data: values,
      backgroundColor: PALETTE[index % PALETTE.length],
      borderColor: PALETTE[index % PALETTE.length],
      borderWidth: spec.kind === "line" ? 2 : 0,
      tension: 0.2,
    }));
    // Drawn once the canvas is in the page, so Chart.js can measure its box.
    requestAnimationFrame(() => {
      new window.Chart(canvas, {
        type: spec.kind === "line" ? "line" : "bar",
        data: { labels: spec.labels, datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          plugins: {
            title: { display: true, text: spec.title },
            legend: { display: datasets.length > 1, position: "bottom" },
            tooltip: {
              callbacks: {
                label: (ctx) => ctx.dataset.label + ": " + unit + formatNumber(ctx.parsed.y),
              },
            },
          },
          scales: {
            y: { beginAtZero: true, ticks: { callback: (v) => unit + formatNumber(v) } },
          },
        },
      });
    });
    return figure;
  }

  function renderButtons(buttons, active) {
    const row = el("div", "buttons");
    for (const button of buttons) {
      const node = el("button", "choice", button.label);
      node.type = "button";
      node.disabled = !active;
      node.addEventListener("click", () => {
        if (busy) return;
        for (const other of row.querySelectorAll("button")) other.disabled = true;
        node.classList.add("chosen");
        send({ text: "", button_payload: button.payload }, button.label);
      });
      row.append(node);
    }
    return row;
  }

  function renderCitations(citations) {
    const box = el("div", "citations");
    box.append(el("span", "muted", "Sources: "));
    citations.forEach((citation, index) => {
      const link = el("a", "citation",
        [citation.store, citation.date].filter(Boolean).join(", ") ||
          "communication " + citation.communication_id);
      link.href = "#communication-" + citation.communication_id;
      link.title = citation.snippet || "";
      link.addEventListener("click", (event) => {
        event.preventDefault();
        openCommunication(citation.communication_id);
      });
      if (index > 0) box.append(document.createTextNode(" · "));
      box.append(link);
    });
    return box;
  }

  // The extras of a reply: table, chart, buttons, citations and notice.
  function renderReply(message, reply, options) {
    if (!message.text.textContent) message.text.textContent = reply.text;
    const bubble = message.bubble;
    if (reply.table && reply.table.columns && reply.table.columns.length) {
      bubble.append(renderTable(reply.table));
    }
    if (reply.chart && reply.chart.labels && reply.chart.labels.length) {
      bubble.append(renderChart(reply.chart));
    }
    if (reply.buttons && reply.buttons.length) {
      bubble.append(renderButtons(reply.buttons, options.active));
    }
    if (reply.citations && reply.citations.length) {
      bubble.append(renderCitations(reply.citations));
    }
    if (reply.notice) bubble.append(el("p", "notice muted", reply.notice));
    scrollToEnd();
  }

  function disableOldButtons() {
    for (const node of log.querySelectorAll(".buttons button")) node.disabled = true;
  }

  // --- the quoted communication dialog --------------------------------------------------------

  async function openCommunication(id) {
    const dialog = $("quote");
    $("quote-title").textContent = "Communication #" + id;
    $("quote-meta").textContent = "Loading…";
    $("quote-text").textContent = "";
    $("quote-error").hidden = true;
    if (!dialog.open) dialog.showModal();
    try {
      const item = await (await api("/api/communications/" + encodeURIComponent(id))).json();
      $("quote-title").textContent = item.store;
      const when = new Date(item.date);
      $("quote-meta").textContent = [
        isNaN(when) ? item.date : when.toLocaleString("en-IN", {
          dateStyle: "medium", timeStyle: "short",
        }),
        item.kind,
        item.channel,
        item.author,
      ].filter(Boolean).join(" · ");
      $("quote-text").textContent = item.text;
    } catch (error) {
      if (handleAuthError(error)) {
        dialog.close();
        return;
      }
      $("quote-meta").textContent = "";
      $("quote-error").hidden = false;
      $("quote-error").textContent = error instanceof HttpError && error.status === 404
        ? "This communication is not available to you."
        : politeMessage(error);
    }
  }

  // --- asking ---------------------------------------------------------------------------------

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    return { name, data: JSON.parse(data.join("\n")) };
  }

  // Streams one turn; returns the turn JSON (from the `reply` event).
  async function streamTurn(body, message) {
    const response = await api("/api/chat/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let turn = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (!event) continue;
        if (event.name === "delta") message.append(event.data.text);
        else if (event.name === "reply") turn = event.data;
        else if (event.name === "error") throw new Error(event.data.message);
      }
    }
    if (!turn) throw new TypeError("the stream ended before the reply");
    return turn;
  }

  // The same message id again: the server answers the reply of the first submission.
  async function fetchTurn(body) {
    const response = await api("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    return response.json();
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    askBox.setAttribute("aria-busy", value ? "true" : "false");
  }

  async function send(body, buttonLabel) {
    if (busy) return;
    setBusy(true);
    disableOldButtons();
    body.message_id = newMessageId();
    addUserMessage(body.text, buttonLabel);
    const message = addAssistantMessage();
    try {
      let turn;
      try {
        turn = await streamTurn(body, message);
      } catch (error) {
        // A broken connection: ask again with the same id, which is never processed twice.
        if (!(error instanceof TypeError)) throw error;
        turn = await fetchTurn(body);
        message.text.textContent = "";
      }
      message.done();
      message.text.textContent = turn.reply.text;
      renderReply(message, turn.reply, { active: true });
    } catch (error) {
      if (handleAuthError(error)) return;
      message.fail(error instanceof HttpError || error instanceof TypeError
        ? politeMessage(error)
        : error.message || politeMessage(error));
    } finally {
      setBusy(false);
      if (!views.chat.hidden) askBox.focus();
    }
  }

  async function loadHistory() {
    // Busy while the earlier conversation loads (assistive technology, and anything waiting
    // to tell new messages from restored ones).
    log.setAttribute("aria-busy", "true");
    try {
      await restoreHistory();
    } finally {
      log.setAttribute("aria-busy", "false");
    }
  }

  async function restoreHistory() {
    log.replaceChildren();
    let turns = [];
    try {
      turns = (await (await api("/api/chat/history?limit=50")).json()).turns;
    } catch (error) {
      if (handleAuthError(error)) return;
      const message = addAssistantMessage();
      message.fail("The earlier conversation could not be loaded. " + politeMessage(error));
      return;
    }
    turns.forEach((turn, index) => {
      addUserMessage(turn.text, turn.button);
      const message = addAssistantMessage();
      message.done();
      message.text.textContent = turn.reply.text;
      // Only the latest reply's buttons can still act; older ones have expired.
      renderReply(message, turn.reply, { active: index === turns.length - 1 });
    });
    $("empty").hidden = turns.length > 0;
    scrollToEnd();
  }

  // --- wiring ---------------------------------------------------------------------------------

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = $("login-submit");
    const error = $("login-error");
    const email = $("email").value.trim();
    const password = $("password").value;
    if (!email || !password) {
      error.hidden = false;
      error.textContent = "Enter your e-mail and password.";
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    try {
      const response = await fetch("/api/auth/token", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ username: email, password }),
      });
      if (!response.ok) throw await errorOf(response);
      localStorage.setItem(TOKEN_KEY, (await response.json()).access_token);
      $("password").value = "";
      await showChat();
    } catch (failure) {
      error.hidden = false;
      error.textContent = failure instanceof HttpError && failure.status === 401
        ? "Incorrect e-mail or password."
        : politeMessage(failure);
    } finally {
      submit.disabled = false;
    }
  });

  $("logout").addEventListener("click", () => showLogin(""));

  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = askBox.value.trim();
    if (!text || busy) return;
    if (text.length > MAX_TEXT) {
      addAssistantMessage().fail(politeMessage(new HttpError(422)));
      return;
    }
    askBox.value = "";
    askBox.style.height = "";
    send({ text });
  });

  // Enter sends, Shift+Enter starts a new line.
  askBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });

  askBox.addEventListener("input", () => {
    askBox.style.height = "";
    askBox.style.height = Math.min(askBox.scrollHeight, 160) + "px";
  });

  if (token()) showChat();
  else showLogin("");
})();
