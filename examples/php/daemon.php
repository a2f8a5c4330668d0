<?php
/*
 * The chat daemon for a PHP site, in one file (PHP CLI + FFI):
 *
 *   cargo build --release
 *   php examples/php/daemon.php 127.0.0.1:8080          # then open http://127.0.0.1:8080/
 *
 * - every message waits for this script (relay "host"): a word filter masks bad words, a rate
 *   note tells a fast typist to slow down, "/time" and "/help" are answered by a bot;
 * - every accepted message is stored in SQLite (PDO), and on start the stored messages are put
 *   back into the rooms' history under the same ids and epoch, so browsers that reconnect after
 *   a daemon restart get exactly what they missed; on SIGTERM the engine stops taking messages
 *   and every message it accepted is stored before the daemon exits, and message ids never go
 *   back (the highest id ever seen or reported lost is kept as the engine's `id_floor`);
 * - the site's pages post through the HTTP API (EMBEDCHAT_API_KEY) or the control socket
 *   (EMBEDCHAT_SOCKET), and its login is carried in with tokens (EMBEDCHAT_SECRET); see
 *   examples/php/site/.
 *
 * - every refused WebSocket upgrade is logged on stderr with the reason the browser was sent
 *   (a browser never shows it: a missing EMBEDCHAT_SECRET, a stale login, a foreign origin…).
 *
 * Needs php-cli with FFI and PDO SQLite (Debian: apt-get install php-cli php-sqlite3).
 * examples/php/site/run starts this daemon and the site together, with matching secrets.
 *
 * Options: --db=FILE (default: chat.sqlite in the system temp directory). Environment:
 * EMBEDCHAT_LIB, EMBEDCHAT_SECRET, EMBEDCHAT_API_KEY, EMBEDCHAT_SOCKET, EMBEDCHAT_SOCKET_UIDS (the
 * uids, comma-separated, of other users whose pages post through the socket: an FPM pool that
 * runs as another user), and EMBEDCHAT_SITE_ORIGIN: the origin(s) of the site whose pages show
 * the chat page in an iframe (login.php), e.g. https://www.example.com; browsers refuse the
 * frame to every other origin. Ctrl-C or SIGTERM stops it cleanly (clients get close 1001).
 *
 * Handlers run only inside $engine->run(), on this PHP thread; the engine never calls PHP from
 * its own threads.
 */
declare(strict_types=1);

require dirname(__DIR__, 2) . '/bindings/php/autoload.php';

use EmbedChat\Engine;
use EmbedChat\Event;
use EmbedChat\EventKind;
use EmbedChat\Exception\EmbedChatException;

$listen = '127.0.0.1:8080';
$dbPath = sys_get_temp_dir() . '/chat.sqlite';
foreach (array_slice($argv, 1) as $arg) {
    if (str_starts_with($arg, '--db=')) {
        $dbPath = substr($arg, 5);
    } else {
        $listen = $arg;
    }
}
$env = static fn (string $k): ?string => ($v = getenv($k)) === false || $v === '' ? null : $v;

// PDO's own message for a missing driver is "could not find driver": say which package it is.
if (!extension_loaded('pdo_sqlite')) {
    fwrite(STDERR, "daemon.php stores messages in SQLite and this PHP has no pdo_sqlite: install it "
        . "(Debian/Ubuntu: apt-get install php-sqlite3; elsewhere enable extension=pdo_sqlite in php.ini)\n");
    exit(1);
}

// --- storage -----------------------------------------------------------------------------
$db = new PDO("sqlite:$dbPath", null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$db->exec('PRAGMA journal_mode=WAL');
$db->exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
$db->exec('CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
    sender TEXT NOT NULL, text TEXT NOT NULL, user TEXT, PRIMARY KEY (room, id))');
if (!in_array('user', array_column($db->query('PRAGMA table_info(messages)')->fetchAll(), 'name'), true)) {
    $db->exec('ALTER TABLE messages ADD COLUMN user TEXT'); // a database from before the column
}
// The history epoch names this database's message ids: it stays the same across restarts, so
// a browser's "since" stays meaningful.
$epoch = $db->query("SELECT value FROM meta WHERE key = 'epoch'")->fetchColumn();
if ($epoch === false) {
    $epoch = 'db-' . bin2hex(random_bytes(6));
    $db->prepare("INSERT INTO meta (key, value) VALUES ('epoch', ?)")->execute([$epoch]);
}
$store = $db->prepare('INSERT OR IGNORE INTO messages (room, id, ts_ms, sender, text, user) VALUES (?, ?, ?, ?, ?, ?)');
// Ids continue above every id given out before: the stored ones, and those the engine reported
// lost (events dropped while this script was too slow to take them).
$floor = max((int) $db->query("SELECT value FROM meta WHERE key = 'id_floor'")->fetchColumn(),
    (int) $db->query('SELECT MAX(id) FROM messages')->fetchColumn());
$saveFloor = $db->prepare("INSERT INTO meta (key, value) VALUES ('id_floor', ?)
    ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)");

// --- the engine --------------------------------------------------------------------------
$config = [
    'listen' => $listen,
    'relay' => 'host',          // every message waits for the handlers below
    'hook_timeout_ms' => 2000,  // ...but never longer than this (then it is published)
    'history_epoch' => $epoch,
    'id_floor' => $floor,
    'published_events' => true, // every message with its id, to store it
    'history_size' => 100,
    'refused_events' => true,   // each refused upgrade, for the log below
];
if ($secret = $env('EMBEDCHAT_SECRET')) {
    $config['auth'] = ['secret' => $secret, 'required' => false]; // logged-in or anonymous
}
if ($key = $env('EMBEDCHAT_API_KEY')) {
    $config['api_key'] = $key;
}
if ($sock = $env('EMBEDCHAT_SOCKET')) {
    $config['control_socket'] = $sock;
    if ($uids = $env('EMBEDCHAT_SOCKET_UIDS')) {
        // Another user's pages (the FPM pool's) reach the socket through its mode and group;
        // the engine serves them only when their uid is listed.
        $config['control_socket_mode'] = '0660';
        $config['control_socket_uids'] = array_map('intval', explode(',', $uids));
    }
}
if ($origins = $env('EMBEDCHAT_SITE_ORIGIN')) {
    // The page's CSP frame-ancestors: its own origin and the site's (space-separated list).
    $config['page_frame_ancestors'] = ["'self'", ...preg_split('/\s+/', trim($origins))];
}
try {
    $engine = Engine::start($config);
} catch (EmbedChatException $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}

// Put the stored history back, oldest first, under the same ids.
$restored = 0;
$rows = $db->query('SELECT room, id, ts_ms, sender, text FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY room ORDER BY id DESC) AS n FROM messages)
    WHERE n <= 100 ORDER BY room, id');
foreach ($rows as $r) {
    // chat_restore takes a C string: a NUL byte (possible in text posted through the HTTP API)
    // would be refused and stop the daemon here, so it is dropped, as the page shows it.
    $engine->restore($r['room'], (int) $r['id'], (int) $r['ts_ms'], $r['sender'], str_replace("\0", '', $r['text']));
    $restored++;
}
[$host, $port] = [explode(':', $listen)[0], $engine->port()];
echo "listening on http://$host:$port (restored $restored messages from $dbPath)\n";

// --- moderation and the bot ----------------------------------------------------------------
const BAD_WORDS = ['darn', 'heck', 'fudge'];
const RATE_WINDOW_S = 10;
const RATE_NOTE_AFTER = 8;
/** @var array<int, list<float>> $recent message times per connection */
$recent = [];

$engine->on(EventKind::Message, function (Event $ev, Engine $engine) use (&$recent): void {
    $text = (string) $ev->text;
    if ($text === '/time' || $text === '/help') {
        $engine->reject($ev->replyToken, 'answered privately'); // bot commands are not posted
        $engine->send($ev->connId, $text === '/time'
            ? 'server time: ' . date('H:i:s') . ' (PHP ' . PHP_VERSION . ')'
            : 'commands: /time, /w NAME TEXT (whisper), /nick NAME');
        return;
    }
    // Rate note: the engine enforces the hard limit; this is a friendly word before it.
    $now = microtime(true);
    $times = array_values(array_filter($recent[$ev->connId] ?? [], static fn ($t) => $t > $now - RATE_WINDOW_S));
    $times[] = $now;
    $recent[$ev->connId] = $times;
    if (count($times) === RATE_NOTE_AFTER) {
        $engine->send($ev->connId, 'you are typing fast; give the others a chance');
    }
    // The filter reads the whole text ($ev->text holds every byte, NUL included). NUL bytes are
    // removed first: a page may show "da\0rn" as "darn", so the filter must see it that way too,
    // and replace() cannot carry a NUL (nor can restore() after a restart).
    $clean = preg_replace_callback(
        '/\b(' . implode('|', BAD_WORDS) . ')\b/i',
        static fn ($m) => str_repeat('*', strlen($m[0])),
        str_replace("\0", '', $text),
    );
    if ($clean === '') {
        $engine->reject($ev->replyToken, 'empty message'); // it was nothing but NUL bytes
    } elseif ($clean === $text) {
        $engine->approve($ev->replyToken);
    } else {
        $engine->replace($ev->replyToken, $clean);
    }
});

// Every message that enters a room, with the id browsers see: store it, with the site's user
// id when the sender logged in with a token.
$engine->on(EventKind::Published, function (Event $ev) use ($store): void {
    $store->execute([$ev->room, $ev->msgId, $ev->tsMs, (string) $ev->name, (string) $ev->text, $ev->user]);
});
// Events were dropped (this script fell behind): the ids they carried are gone for good, and
// must not be given out again after a restart.
$engine->on(EventKind::Dropped, function (Event $ev) use ($saveFloor): void {
    if ($ev->msgId > 0) {
        $saveFloor->execute([$ev->msgId]);
    }
});
// A refused upgrade: the browser got an HTTP status and a reason it never shows its page (the
// bundled page asks the server again); the operator sees it here.
$engine->on(EventKind::Refused, function (Event $ev): void {
    fwrite(STDERR, sprintf("refused a WebSocket upgrade%s: HTTP %d: %s\n",
        $ev->room !== null ? " to room {$ev->room}" : '', $ev->code, (string) $ev->text));
});
$engine->on(EventKind::Disconnect, function (Event $ev) use (&$recent): void {
    unset($recent[$ev->connId]);
});
$engine->onAny(function (Event $ev): void {
    echo $ev->json, "\n";
});

$engine->run(); // until SIGINT/SIGTERM: stops the engine, then handles what was queued
$stats = $engine->stats();
echo 'stopped (ok): ' . json_encode($stats) . "\n";
