// Laravel Echo against the engine: a public channel (`news`), a private one per user
// (`private-user.{name}`) and a presence channel (`presence-lounge`) with whispers (client
// events). Messages the host or the engine's JSON clients post in a room arrive as the event
// `message` with the message object as its data (docs/pusher.md).
"use strict";
const $ = (id) => document.getElementById(id);

function log(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("log").append(li);
}

function showMembers(users) {
  $("members").replaceChildren(...users.map((u) => {
    const li = document.createElement("li");
    li.textContent = u.name;
    li.dataset.name = u.name;
    return li;
  }));
}

function start(name) {
  const cfg = window.EMBEDCHAT;
  const echo = new Echo.default({
    broadcaster: "pusher",
    key: cfg.key,
    cluster: "mt1",
    wsHost: cfg.wsHost,
    wsPort: cfg.wsPort,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    authEndpoint: "/broadcasting/auth",
    auth: { headers: { "X-User": name } },
  });
  window.echo = echo;
  let members = [];
  echo.channel("news")
    .listen(".headline", (e) => log(`headline: ${e.title}`));
  echo.private(`user.${name}`)
    .listen(".notice", (e) => log(`notice: ${e.text}`));
  const lounge = echo.join("lounge")
    .here((users) => { members = users; showMembers(members); })
    .joining((u) => { members = [...members, u]; showMembers(members); log(`${u.name} joined`); })
    .leaving((u) => { members = members.filter((m) => m.name !== u.name); showMembers(members); log(`${u.name} left`); })
    .listen(".message", (m) => log(`${m.from.name}: ${m.text}`))
    .listenForWhisper("said", (e) => log(`${e.name}: ${e.text}`));
  $("say").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    lounge.whisper("said", { name, text });
    log(`${name}: ${text}`);
    $("text").value = "";
  });
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  $("login").hidden = true;
  $("chat").hidden = false;
  start(name);
});
