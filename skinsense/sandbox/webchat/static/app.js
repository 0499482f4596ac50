// The sandbox's web chat: plays a patient or a clinician through the control API (skinsense/sandbox/control.py)
// and shows what the bot sent, live (long polling /sandbox/web/chats/{id}). Plain JavaScript, no dependencies.
// Everything the bot or a "patient" wrote is put in the page as text (textContent), never as HTML.
"use strict";

const LONG_POLL_WAIT_S = 25;
const FIRST_PATIENT_CHAT = 1001;
const PHOTO_TYPES = new Set(["image/jpeg", "image/png", "image/webp"]); // what Telegram apps send as photos

const page = {
  chatId: null,
  version: "",
  clinicianChatIds: [],
  clinicianUserIds: [],
  chats: [],
  seenCounts: new Map(), // chat id -> messages seen, for the unread badges
  openedChats: new Set(), // patient chats opened here that have no messages yet
  rendered: new Map(), // key -> {signature, element}
  pending: [], // files attached, not yet sent
  poll: null, // AbortController of the running long poll
  sending: Promise.resolve(), // the sends in progress, in order
  chatListSignature: "",
  answersSeen: new Set(), // query ids of the bot's answers to taps already shown (or there before the chat opened)
  answersPrimed: false, // the open chat's earlier answers are marked seen, not shown
};

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function isSafeUrl(url) {
  return typeof url === "string" && /^(https?:|tg:)/i.test(url);
}

function fileUrl(fileId) {
  return "/sandbox/files/" + encodeURIComponent(fileId);
}

function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => (toast.hidden = true), 6000);
}

// The bot's answer to a tap (answerCallbackQuery), as Telegram's apps show it: a toast that fades, or with
// show_alert a box that stays until clicked.
function showBotAnswer(answer) {
  const box = $("bot-answer");
  box.textContent = answer.text;
  box.classList.toggle("alert", Boolean(answer.show_alert));
  box.dataset.queryId = answer.query_id;
  box.hidden = false;
  clearTimeout(showBotAnswer.timer);
  if (!answer.show_alert) showBotAnswer.timer = setTimeout(() => (box.hidden = true), 4000);
}

function handleAnswers(answers) {
  for (const answer of answers) {
    if (page.answersSeen.has(answer.query_id)) continue;
    page.answersSeen.add(answer.query_id);
    if (page.answersPrimed) showBotAnswer(answer);
  }
  page.answersPrimed = true;
}

function setConnection(online) {
  const badge = $("connection");
  badge.textContent = online ? "live" : "sandbox not answering, retrying…";
  badge.classList.toggle("offline", !online);
}

// ---- the control API ---------------------------------------------------------------------------------------

async function control(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    throw new Error((body && body.description) || response.status + " " + response.statusText);
  }
  return body;
}

// Who sends, fixed when the patient presses Send or a button: the chat, and in a group chat (negative id, as in
// Telegram) the member the page speaks as (the "member id" field).
function sender() {
  const from = page.chatId < 0 ? {from_id: Number($("member-id").value) || 1} : {};
  return {chatId: page.chatId, from};
}

function chatPath(who, what, query) {
  const params = query ? "?" + new URLSearchParams(query).toString() : "";
  return "/sandbox/chats/" + who.chatId + "/" + what + params;
}

function sendText(who, text) {
  return control(chatPath(who, "text"), {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({text, ...who.from}),
  });
}

function sendPhoto(who, file, caption, mediaGroupId) {
  const query = {};
  if (caption) query.caption = caption;
  if (mediaGroupId) query.media_group_id = mediaGroupId;
  return control(chatPath(who, "photo", query), {method: "POST", body: file});
}

function sendDocument(who, file, caption, mediaGroupId) {
  const query = {file_name: file.name || "file", mime_type: file.type || "application/octet-stream"};
  if (caption) query.caption = caption;
  if (mediaGroupId) query.media_group_id = mediaGroupId;
  return control(chatPath(who, "document", query), {method: "POST", body: file});
}

function pressButton(who, messageId, data) {
  return control(chatPath(who, "callback"), {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({message_id: messageId, data, ...who.from}),
  });
}

function newMediaGroupId() {
  return String(Date.now()) + String(Math.floor(Math.random() * 1000)).padStart(3, "0");
}

// Sends what is in the composer: attached files (photos as one album, other files as documents; the text is the
// caption of the first), or else the text. The composer empties at once; sends go out one after another, in order.
function sendComposer() {
  if (page.chatId === null) return;
  const text = $("text").value.trim();
  const files = page.pending.slice();
  if (!files.length && !text) return;
  const asFiles = $("as-files").checked;
  const who = sender();
  $("text").value = "";
  clearTray();
  $("text").focus();
  page.sending = page.sending
    .then(() => sendMessages(who, text, files, asFiles))
    .then(() => scrollToBottom(true))
    .catch((error) => showToast("Not sent: " + error.message));
}

async function sendMessages(who, text, files, asFiles) {
  const photos = files.filter((file) => !asFiles && PHOTO_TYPES.has(file.type));
  const documents = files.filter((file) => !photos.includes(file));
  let caption = text;
  for (const [batch, send] of [[photos, sendPhoto], [documents, sendDocument]]) {
    const group = batch.length > 1 ? newMediaGroupId() : null;
    for (const file of batch) {
      await send(who, file, caption, group);
      caption = "";
    }
  }
  if (!files.length) await sendText(who, text);
}

// ---- attachments -------------------------------------------------------------------------------------------

function attach(fileList) {
  for (const file of Array.from(fileList)) page.pending.push(file);
  renderTray();
}

function clearTray() {
  page.pending = [];
  $("file-input").value = "";
  renderTray();
}

function renderTray() {
  const list = $("tray-files");
  for (const image of list.querySelectorAll("img")) URL.revokeObjectURL(image.src);
  list.replaceChildren();
  page.pending.forEach((file, index) => {
    const item = element("li", "tray-file");
    if (file.type.startsWith("image/")) {
      const preview = element("img");
      preview.src = URL.createObjectURL(file);
      preview.alt = "";
      item.append(preview);
    }
    item.append(element("span", "tray-name", file.name + " (" + formatSize(file.size) + ")"));
    const remove = element("button", "tray-remove", "×");
    remove.type = "button";
    remove.title = "Remove";
    remove.addEventListener("click", () => {
      page.pending.splice(index, 1);
      renderTray();
    });
    item.append(remove);
    list.append(item);
  });
  $("tray").hidden = page.pending.length === 0;
}

function formatSize(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
  return (bytes / 1024 / 1024).toFixed(1) + " MB";
}

// ---- rendering messages ------------------------------------------------------------------------------------

// Telegram's formatting entities (offsets in UTF-16 code units, as JavaScript strings count), built as
// elements with text content only; links only for http(s) and tg: addresses.
function formattedText(text, entities) {
  const fragment = document.createDocumentFragment();
  const sorted = (entities || [])
    .filter((entity) => entity.length > 0)
    .sort((a, b) => a.offset - b.offset || b.length - a.length);
  build(fragment, 0, text.length, sorted);
  return fragment;

  function build(parent, start, end, inside) {
    let position = start;
    let rest = inside;
    while (rest.length) {
      const entity = rest.shift();
      const entityEnd = entity.offset + entity.length;
      if (entity.offset < position || entityEnd > end) continue; // overlapping: keep the first
      appendPlain(parent, text.slice(position, entity.offset));
      const nested = rest.filter((other) => other.offset + other.length <= entityEnd && other.offset < entityEnd);
      rest = rest.filter((other) => !nested.includes(other));
      const node = entityElement(entity, text.slice(entity.offset, entityEnd));
      build(node, entity.offset, entityEnd, nested);
      parent.append(node);
      position = entityEnd;
    }
    appendPlain(parent, text.slice(position, end));
  }
}

// Like Telegram's apps: /commands and web addresses in plain text can be clicked (not inside code or links).
const AUTO_DETECTED = /(https?:\/\/[^\s<>"]*[^\s<>".,;:!?)]|(?<![\w/])\/[A-Za-z0-9_]{1,32}\b)/g;

function appendPlain(parent, text) {
  const literal = ["A", "CODE", "PRE"].includes(parent.nodeName) || (parent.classList && parent.classList.contains("command"));
  if (literal) {
    parent.append(text);
    return;
  }
  let position = 0;
  for (const match of text.matchAll(AUTO_DETECTED)) {
    parent.append(text.slice(position, match.index));
    const found = match[0];
    const type = found.startsWith("/") ? "bot_command" : "url";
    const node = entityElement({type}, found);
    node.textContent = found;
    parent.append(node);
    position = match.index + found.length;
  }
  parent.append(text.slice(position));
}

function entityElement(entity, content) {
  const tags = {
    bold: "strong",
    italic: "em",
    underline: "u",
    strikethrough: "s",
    code: "code",
    pre: "pre",
    blockquote: "blockquote",
    expandable_blockquote: "blockquote",
  };
  if (tags[entity.type]) return element(tags[entity.type]);
  if (entity.type === "spoiler") {
    const spoiler = element("span", "spoiler");
    spoiler.title = "spoiler: click to show";
    spoiler.addEventListener("click", () => spoiler.classList.add("shown"));
    return spoiler;
  }
  const url = entity.type === "text_link" ? entity.url : entity.type === "url" ? content : null;
  if (isSafeUrl(url)) {
    const link = element("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    return link;
  }
  if (entity.type === "bot_command") {
    const command = element("span", "command");
    command.title = "send " + content;
    command.addEventListener("click", () => sendText(sender(), content).catch((error) => showToast(error.message)));
    return command;
  }
  return element("span");
}

function messageSummary(message) {
  if (!message) return "";
  const text = message.text || message.caption;
  if (text) return text.length > 80 ? text.slice(0, 79) + "…" : text;
  for (const kind of ["photo", "document", "sticker", "voice", "video", "audio", "animation"]) {
    if (message[kind]) return "[" + kind + "]";
  }
  return "[message]";
}

function photoElement(message) {
  const largest = message.photo[message.photo.length - 1];
  const link = element("a", "photo");
  link.href = fileUrl(largest.file_id);
  link.target = "_blank";
  link.rel = "noopener";
  const image = element("img");
  image.src = fileUrl(largest.file_id);
  image.alt = message.from_bot ? "picture from the bot" : "photo";
  if (largest.width && largest.height) {
    image.width = largest.width;
    image.height = largest.height;
  }
  image.loading = "lazy";
  image.dataset.fileId = largest.file_id;
  image.addEventListener("load", () => scrollToBottom(false));
  link.append(image);
  return link;
}

function documentElement(document_) {
  const box = element("a", "document");
  box.href = fileUrl(document_.file_id);
  box.download = document_.file_name || "file";
  const extension = (document_.file_name || "").includes(".") ? document_.file_name.split(".").pop() : "file";
  box.append(element("span", "document-icon", extension.slice(0, 4).toUpperCase()));
  const details = element("span", "document-details");
  details.append(element("span", "document-name", document_.file_name || "file"));
  const facts = [document_.mime_type, document_.file_size ? formatSize(document_.file_size) : null].filter(Boolean);
  details.append(element("span", "hint", facts.join(", ")));
  box.append(details);
  return box;
}

function keyboardElement(message) {
  const rows = (message.reply_markup && message.reply_markup.inline_keyboard) || [];
  if (!rows.length) return null;
  const keyboard = element("div", "keyboard");
  for (const row of rows) {
    const line = element("div", "keyboard-row");
    for (const button of row) {
      if (button.callback_data !== undefined) {
        const press = element("button", "inline-button", button.text);
        press.type = "button";
        press.dataset.callbackData = button.callback_data;
        press.addEventListener("click", async () => {
          press.disabled = true;
          try {
            await pressButton(sender(), message.message_id, button.callback_data);
          } catch (error) {
            showToast("Button not pressed: " + error.message);
          } finally {
            press.disabled = false;
          }
        });
        line.append(press);
      } else if (isSafeUrl(button.url)) {
        const link = element("a", "inline-button", button.text + " ↗");
        link.href = button.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        line.append(link);
      } else {
        const unsupported = element("button", "inline-button", button.text);
        unsupported.disabled = true;
        unsupported.title = "this kind of button does nothing in the sandbox";
        line.append(unsupported);
      }
    }
    keyboard.append(line);
  }
  return keyboard;
}

function metaElement(messages) {
  const meta = element("div", "meta");
  const edited = messages.filter((message) => message.edits && message.edits.length);
  for (const message of edited) {
    const history = element("details", "history");
    history.append(element("summary", null, "edited"));
    const earlier = element("ol");
    for (const text of message.edits) earlier.append(element("li", null, text === null ? "(no text)" : text));
    history.append(earlier);
    meta.append(history);
  }
  const last = messages[messages.length - 1];
  const time = element("time", null, new Date(last.date * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
  time.dateTime = new Date(last.date * 1000).toISOString();
  meta.append(time);
  return meta;
}

// One bubble: a message, or the messages of one album (media group) side by side.
function bubbleElement(messages) {
  const first = messages[0];
  const item = element("li", "message " + (first.from_bot ? "from-bot" : "from-user"));
  item.dataset.from = first.from_bot ? "bot" : "user";
  item.dataset.messageId = String(first.message_id);
  if (messages.length > 1) {
    item.dataset.messageIds = messages.map((message) => message.message_id).join(" ");
    item.classList.add("album");
  }
  const bubble = element("div", "bubble");
  if (first.chat && first.chat.id < 0 && !first.from_bot && first.from) {
    bubble.append(element("div", "sender", first.from.first_name + " (" + first.from.id + ")"));
  }
  if (first.reply_to_message) bubble.append(element("div", "reply-to", "↩ " + messageSummary(first.reply_to_message)));
  const photos = messages.filter((message) => message.photo);
  if (photos.length) {
    const media = element("div", "media");
    for (const message of photos) media.append(photoElement(message));
    bubble.append(media);
  }
  for (const message of messages) {
    if (message.document) bubble.append(documentElement(message.document));
    for (const kind of ["sticker", "voice", "video", "video_note", "audio", "animation", "location", "contact"]) {
      if (message[kind]) bubble.append(element("div", "placeholder", "[" + kind.replace("_", " ") + "]"));
    }
    if (message.text !== undefined) bubble.append(textElement(message.text, message.entities));
    if (message.caption) bubble.append(textElement(message.caption, message.caption_entities));
    const keyboard = keyboardElement(message);
    if (keyboard) bubble.append(keyboard);
  }
  bubble.append(metaElement(messages));
  item.append(bubble);
  return item;
}

function textElement(text, entities) {
  const box = element("div", "text");
  box.append(formattedText(String(text), entities));
  return box;
}

// Consecutive messages of one media group from one sender make one bubble.
function bubbles(messages) {
  const groups = [];
  for (const message of messages) {
    const previous = groups[groups.length - 1];
    const group = message.media_group_id;
    if (previous && group && previous[0].media_group_id === group && previous[0].from_bot === message.from_bot) {
      previous.push(message);
    } else {
      groups.push([message]);
    }
  }
  return groups;
}

function nearBottom() {
  const list = $("messages");
  return list.scrollHeight - list.scrollTop - list.clientHeight < 120;
}

function scrollToBottom(always) {
  const list = $("messages");
  if (always || page.stickToBottom) list.scrollTop = list.scrollHeight;
}

// Only bubbles whose content changed are rebuilt, so pictures are not reloaded on every update.
function renderMessages(messages) {
  const list = $("messages");
  page.stickToBottom = nearBottom() || list.childElementCount === 0;
  const wanted = [];
  for (const group of bubbles(messages)) {
    const key = group.map((message) => message.message_id).join("+");
    const signature = JSON.stringify(group);
    let known = page.rendered.get(key);
    if (!known || known.signature !== signature) {
      known = {signature, element: bubbleElement(group)};
      page.rendered.set(key, known);
    }
    wanted.push(known.element);
  }
  const keep = new Set(wanted);
  for (const [key, known] of page.rendered) if (!keep.has(known.element)) page.rendered.delete(key);
  wanted.forEach((node, index) => {
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
  });
  while (list.children.length > wanted.length) list.lastElementChild.remove();
  $("empty-chat").hidden = messages.length > 0;
  scrollToBottom(false);
}

const CHAT_ACTIONS = {
  typing: "typing…",
  upload_photo: "sending a photo…",
  upload_document: "sending a file…",
  upload_video: "sending a video…",
};

function renderChatAction(action) {
  const subtitle = $("chat-subtitle");
  subtitle.classList.toggle("action", Boolean(action));
  subtitle.textContent = action
    ? "SkinSense is " + (CHAT_ACTIONS[action] || action.replace(/_/g, " ") + "…")
    : "chat id " + page.chatId + (page.clinicianChatIds.includes(page.chatId) ? ": alerts for clinicians arrive here" : "");
}

// ---- chats -------------------------------------------------------------------------------------------------

function chatName(chatId) {
  if (chatId < 0) return (page.clinicianChatIds.includes(chatId) ? "Clinicians' group " : "Group ") + chatId;
  return (page.clinicianChatIds.includes(chatId) ? "Clinician " : "Patient ") + chatId;
}

// Rebuilt only when what it shows changed, so a click on it is never lost to a rebuild.
function renderChatList() {
  const byId = new Map(page.chats.map((chat) => [chat.chat_id, chat]));
  const patients = new Set(page.chats.filter((chat) => chat.role === "patient").map((chat) => chat.chat_id));
  for (const chatId of page.openedChats) if (!page.clinicianChatIds.includes(chatId)) patients.add(chatId);
  const signature = JSON.stringify([page.chatId, page.chats, [...patients], [...page.seenCounts]]);
  if (signature === page.chatListSignature) return;
  page.chatListSignature = signature;
  fillChatList($("patient-chats"), Array.from(patients).sort((a, b) => a - b), byId);
  fillChatList($("clinician-chats"), page.clinicianChatIds, byId);
  $("no-clinicians").hidden = page.clinicianChatIds.length > 0;
}

function fillChatList(list, chatIds, byId) {
  list.replaceChildren();
  for (const chatId of chatIds) {
    const chat = byId.get(chatId) || {message_count: 0, summary: ""};
    const item = element("li");
    const open = element("button", "chat-link" + (chatId === page.chatId ? " current" : ""));
    open.type = "button";
    open.dataset.chatId = String(chatId);
    open.append(element("span", "chat-name", chatName(chatId)));
    const unread = chat.message_count - (page.seenCounts.get(chatId) || 0);
    if (chatId !== page.chatId && unread > 0) open.append(element("span", "unread", unread));
    open.append(element("span", "chat-summary", chat.summary || "no messages yet"));
    open.addEventListener("click", () => openChat(chatId));
    item.append(open);
    list.append(item);
  }
}

function openChat(chatId) {
  if (!Number.isSafeInteger(chatId) || chatId === 0) return; // negative: a group chat
  page.chatId = chatId;
  page.version = "";
  page.openedChats.add(chatId);
  page.rendered.clear();
  page.answersPrimed = false;
  $("bot-answer").hidden = true;
  $("messages").replaceChildren();
  $("chat-title").textContent = chatName(chatId);
  renderChatAction(null);
  $("member").hidden = chatId > 0;
  if (chatId < 0 && !$("member-id").value) $("member-id").value = String(page.clinicianUserIds[0] || 1);
  if (location.hash !== "#" + chatId) history.replaceState(null, "", "#" + chatId);
  renderChatList();
  if (page.poll) page.poll.abort(); // the loop starts over on the new chat at once
  $("text").focus();
}

function newPatientChat() {
  const taken = new Set([...page.chats.map((chat) => chat.chat_id), ...page.openedChats, ...page.clinicianChatIds]);
  let chatId = FIRST_PATIENT_CHAT;
  while (taken.has(chatId)) chatId += 1;
  openChat(chatId);
}

async function pollForever() {
  for (;;) {
    const chatId = page.chatId;
    page.poll = new AbortController();
    try {
      const query = new URLSearchParams({version: page.version, wait: String(LONG_POLL_WAIT_S)});
      const snapshot = await control("/sandbox/web/chats/" + chatId + "?" + query, {signal: page.poll.signal});
      setConnection(true);
      if (chatId !== page.chatId) continue;
      page.version = snapshot.version;
      page.chats = snapshot.chats;
      page.seenCounts.set(chatId, snapshot.messages.length);
      renderMessages(snapshot.messages);
      renderChatList();
      renderChatAction(snapshot.action);
      handleAnswers(snapshot.answers || []);
      document.body.dataset.shownChat = String(chatId); // the chat's messages are on screen (tests wait for it)
    } catch (error) {
      if (error.name === "AbortError") continue;
      setConnection(false);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

// ---- start -------------------------------------------------------------------------------------------------

// The controls work from the first moment (nothing typed is lost); the chat opens once the settings are read.
async function start() {
  listen();
  try {
    const config = await control("/sandbox/web/config");
    page.clinicianChatIds = config.clinician_chat_ids;
    page.clinicianUserIds = config.clinician_user_ids || [];
  } catch (error) {
    showToast("Could not read the sandbox's settings: " + error.message);
  }
  openChat(Number(location.hash.slice(1)) || FIRST_PATIENT_CHAT);
  pollForever();
}

function listen() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendComposer();
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendComposer();
    }
  });
  $("file-input").addEventListener("change", (event) => attach(event.target.files));
  $("new-patient").addEventListener("click", newPatientChat);
  $("bot-answer").addEventListener("click", () => ($("bot-answer").hidden = true));
  $("open-chat").addEventListener("submit", (event) => {
    event.preventDefault();
    openChat(Number($("open-chat-id").value));
    $("open-chat-id").value = "";
  });
  document.addEventListener("paste", (event) => {
    if (event.clipboardData && event.clipboardData.files.length) attach(event.clipboardData.files);
  });
  const chatPane = $("chat");
  let dragDepth = 0;
  chatPane.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    $("drop-zone").hidden = false;
  });
  chatPane.addEventListener("dragover", (event) => event.preventDefault());
  chatPane.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) $("drop-zone").hidden = true;
  });
  chatPane.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    $("drop-zone").hidden = true;
    if (event.dataTransfer && event.dataTransfer.files.length) attach(event.dataTransfer.files);
  });
  window.addEventListener("hashchange", () => {
    const chatId = Number(location.hash.slice(1));
    if (chatId && chatId !== page.chatId) openChat(chatId);
  });
}

start();
