<?php
// Where the site finds its chat daemon. Set these in the web server's environment (FPM pool:
// env[EMBEDCHAT_SECRET] = ...), with the same values the daemon was started with.
//
// The secret and the API key have no built-in defaults: a default published in this file would
// let anyone who reads it mint login tokens and post as the site. Without them every page stops
// with a message naming the variable to set.
declare(strict_types=1);

require dirname(__DIR__, 3) . '/bindings/php/autoload.php';

$env = static fn (string $k, string $default): string => ($v = getenv($k)) === false || $v === '' ? $default : $v;

/** A secret from the environment (at least 16 bytes, as the engine requires), or a clear stop. */
$required = static function (string $k): string {
    $v = getenv($k);
    if (is_string($v) && strlen($v) >= 16) {
        return $v;
    }
    $why = ($v === false || $v === '') ? 'is not set' : 'is shorter than 16 bytes';
    $msg = "examples/php/site: the environment variable $k $why. Set it to the value the chat daemon "
        . "was started with; make one with: php -r 'echo bin2hex(random_bytes(32)), PHP_EOL;'";
    error_log($msg);
    if (PHP_SAPI !== 'cli') {
        http_response_code(500);
        header('Content-Type: text/plain; charset=utf-8');
    }
    echo $msg, "\n";
    exit(1);
};

return [
    // The daemon's address as browsers see it (its bundled page and WebSocket live there).
    'chat_url' => rtrim($env('EMBEDCHAT_URL', 'http://127.0.0.1:8080'), '/'),
    // The same secret as the daemon's auth.secret (EMBEDCHAT_SECRET when it started).
    'secret' => $required('EMBEDCHAT_SECRET'),
    // The HTTP API key (the daemon's EMBEDCHAT_API_KEY).
    'api_key' => $required('EMBEDCHAT_API_KEY'),
    // The control socket (the daemon's EMBEDCHAT_SOCKET); needs FFI preloaded in FPM.
    'socket' => $env('EMBEDCHAT_SOCKET', '/run/embedchat/chat.sock'),
    // The user the daemon runs as, when it is not this pool's user (nor root): Engine::connect
    // talks to no other, in case someone else bound the socket's path.
    'daemon_user' => $env('EMBEDCHAT_DAEMON_USER', '') ?: null,
];
