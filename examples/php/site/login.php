<?php
/*
 * The site's login, carried into the chat. A real site checks a password here; this one takes
 * a name. Then it mints a login token (EmbedChat\Token, pure PHP: no FFI in FPM) and serves a
 * page with the chat in it, framed from the daemon (start the daemon with EMBEDCHAT_SITE_ORIGIN
 * set to this site's origin, or the browser refuses the frame).
 *
 * The token stays out of every URL a server sees: it goes to the chat page in the URL fragment,
 * which browsers never send; the page removes it from its address at once and opens the
 * WebSocket with it in the Sec-WebSocket-Protocol header, not in the query, which proxies log.
 * It lives 5 minutes: it is only needed to open the connection, and every load of this page
 * mints a new one (a page that must reconnect after it expired asks for a reload).
 */
declare(strict_types=1);

use EmbedChat\Token;

$cfg = require __DIR__ . '/config.php';
session_start();

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $name = trim((string) ($_POST['name'] ?? ''));
    if (preg_match('/^.{1,32}$/u', $name) === 1) {
        session_regenerate_id(true);
        // A stable user id: all of this user's tabs are one member of the chat.
        $_SESSION['user'] = ['id' => 'u-' . substr(hash('sha256', strtolower($name)), 0, 12), 'name' => $name];
    }
    header('Location: login.php', true, 303);
    exit;
}

$user = $_SESSION['user'] ?? null;
header('Content-Type: text/html; charset=utf-8');
header('Cache-Control: no-store'); // the page holds a login token: not for caches or Back
header('Referrer-Policy: no-referrer');
$h = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Our site — chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
  header { padding: .5rem 1rem; background: #234; color: #fff; }
  iframe { flex: 1; border: 0; width: 100%; }
  form { padding: 2rem; }
</style>
</head>
<body>
<header>Our site<?= $user ? ' — signed in as ' . $h($user['name']) : '' ?></header>
<?php if ($user === null): ?>
  <form method="post">
    <label>Your name <input name="name" required maxlength="32" autofocus></label>
    <button>Sign in</button>
  </form>
<?php else:
    $token = Token::issue($cfg['secret'], $user['id'], $user['name'], [], ttl: 300);
    ?>
  <iframe title="chat" src="<?= $h($cfg['chat_url']) ?>/#token=<?= $h($token) ?>"></iframe>
<?php endif; ?>
</body>
</html>
