// The conversation with a tipster, inside an opened alert: the thread's
// history (each item sealed to the team, opened on this phone) and a reply
// box. A reply goes to the gateway, which seals it for the thread and hands
// it to the reply relay for the tipster's channel; the tipster never sees
// who wrote it, and this view never shows a mediator's name either.
//
// Routes: GET /api/v1/threads/{thread} (tips without their envelopes, each
// fetched from GET /api/v1/alerts/{tip}/envelope) and
// POST /api/v1/threads/{thread}/replies.

const MAX_REPLY = 1000;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Who wrote an item, in words that name nobody. Items are `kind: "tip"` (the
 * tipster's messages, TipDocument inside) or `kind: "reply"` (the team's,
 * {kind, thread, sent, text} inside): a reply never says which mediator.
 */
function author(item) {
  return item.kind === "reply" ? "The team (to the tipster)" : "Tipster";
}

/**
 * An item's sealed bytes. A reply (short) comes inline; a tip does not (it
 * may hold megabytes of photos): it is fetched alone, one at a time, as the
 * opened alert is, unless the gateway says it was not sealed to this phone.
 */
async function sealed(ctx, item) {
  if (item.kind !== "tip") return fromBase64(item.envelope);
  if (item.can_open === false) throw new Error("not sealed to this phone");
  return ctx.request("GET", `/api/v1/alerts/${encodeURIComponent(item.tip_id)}/envelope`, { bytes: true });
}

const contexts = new WeakMap();

/**
 * Builds the thread view in `root` (the opened alert's <section>).
 * ctx: {thread, request, openEnvelope, isCurrent}
 */
export function mountThread(root, ctx) {
  contexts.set(root, ctx);
  const history = el("ol", { class: "thread", id: "thread-items", "aria-label": "Messages, oldest first" });
  const status = el("p", { id: "thread-status", role: "status", "aria-live": "polite" }, "Opening the conversation…");
  const text = el("textarea", {
    id: "reply-text",
    name: "text",
    rows: 3,
    maxLength: MAX_REPLY,
    required: true,
    "aria-describedby": "reply-help",
  });
  const send = el("button", { type: "submit", class: "primary", id: "reply-send" }, "Send reply");
  const replyStatus = el("p", { id: "reply-status", role: "status", "aria-live": "polite" });
  const form = el(
    "form",
    { class: "reply", id: "reply-form", noValidate: true },
    el("label", { htmlFor: "reply-text" }, "Reply to the tipster"),
    text,
    el("p", { id: "reply-help", class: "help" }, "Sent from the program's number or address. The tipster does not see your name or number."),
    send,
    replyStatus,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = text.value.trim();
    if (!body) {
      replyStatus.textContent = "Write a reply first.";
      text.focus();
      return;
    }
    send.disabled = true;
    replyStatus.textContent = "Sending…";
    try {
      await ctx.request("POST", `/api/v1/threads/${encodeURIComponent(ctx.thread)}/replies`, { body: { text: body } });
      if (!ctx.isCurrent()) return;
      text.value = "";
      replyStatus.textContent = "Sent to the tipster.";
      await loadThread(root);
    } catch (err) {
      if (!ctx.isCurrent()) return;
      replyStatus.textContent =
        err.code === "no-reply-channel"
          ? "Not sent: this tipster cannot be answered (a web form tip, or the way back has expired)."
          : `Not sent: ${err.message}`;
    } finally {
      send.disabled = false;
    }
  });
  root.replaceChildren(el("h4", { id: "thread-heading" }, "Conversation"), status, history, form);
}

/** (Re)loads and opens the thread's items. */
export async function loadThread(root) {
  const ctx = contexts.get(root);
  if (!ctx) return;
  const status = root.querySelector("#thread-status");
  const history = root.querySelector("#thread-items");
  let answer;
  try {
    answer = await ctx.request("GET", `/api/v1/threads/${encodeURIComponent(ctx.thread)}`);
  } catch (e) {
    if (ctx.isCurrent()) status.textContent = `Could not load the conversation: ${e.message}`;
    return;
  }
  const items = Array.isArray(answer) ? answer : answer?.items ?? [];
  const rows = [];
  for (const item of items) {
    let doc = null;
    try {
      const plain = await ctx.openEnvelope(await sealed(ctx, item));
      doc = JSON.parse(new TextDecoder().decode(plain));
    } catch {
      doc = null;
    }
    if (!ctx.isCurrent()) return;
    const when = item.received ?? item.sent ?? doc?.received ?? doc?.sent;
    const kind = author(item);
    rows.push(
      el(
        "li",
        { class: kind === "Tipster" ? "msg from-tipster" : "msg from-team", data: { from: kind === "Tipster" ? "tipster" : "team" } },
        el("p", { class: "msg-meta" }, when ? `${kind} · ${new Date(when * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" })}` : kind),
        doc
          ? el("p", { class: "msg-text" }, String(doc.text ?? ""))
          : el("p", { class: "msg-text error" }, "This message could not be opened on this phone."),
      ),
    );
  }
  if (!ctx.isCurrent()) return;
  history.replaceChildren(...rows);
  status.textContent = rows.length ? "" : "No messages yet.";
}
