<?php
// Where the site finds its chat daemon. Set these in the web server's environment (FPM pool:
// env[EMBEDCHAT_SECRET] = ...), with the same values the daemon was started with.
declare(strict_types=1);

require dirname(__DIR__, 3) . '/bindings/php/autoload.php';

$env = static fn (string $k, string $default): string => ($v = getenv($k)) === false || $v === '' ? $default : $v;

return [
    // The daemon's address as browsers see it (its bundled page and WebSocket live there).
    'chat_url' => rtrim($env('EMBEDCHAT_URL', 'http://127.0.0.1:8080'), '/'),
    // The same secret as the daemon's auth.secret (EMBEDCHAT_SECRET when it started).
    'secret' => $env('EMBEDCHAT_SECRET', 'change-me-to-32-random-bytes-0123'),
    // The HTTP API key (the daemon's EMBEDCHAT_API_KEY).
    'api_key' => $env('EMBEDCHAT_API_KEY', 'change-me-api-key-0123456789'),
    // The control socket (the daemon's EMBEDCHAT_SOCKET); needs FFI preloaded in FPM.
    'socket' => $env('EMBEDCHAT_SOCKET', '/run/embedchat/chat.sock'),
];
