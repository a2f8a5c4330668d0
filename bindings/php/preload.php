<?php
/*
 * opcache preload script for PHP-FPM (and other web SAPIs), where the default
 * `ffi.enable=preload` forbids FFI in requests unless it was loaded at server start:
 *
 *   opcache.enable=1
 *   opcache.preload=/path/to/embedchat/bindings/php/preload.php
 *   opcache.preload_user=www-data        ; the FPM pool's user (needed when started as root)
 *   ffi.enable=preload
 *   ; and in the pool (or the environment): env[EMBEDCHAT_LIB] = /path/to/libembedchat.so
 *
 * It loads the library under the FFI scope "EMBEDCHAT" and preloads this package's classes, so
 * EmbedChat\Engine::connect('/run/embedchat.sock') works in every request with no per-request
 * loading cost.
 */
declare(strict_types=1);

$src = __DIR__ . '/src';
// Dependencies first: opcache links a preloaded class only if its parents are preloaded too.
foreach (glob("$src/Exception/EmbedChatException.php") as $f) {
    require_once $f;
}
foreach (array_merge(glob("$src/Exception/*.php"), glob("$src/*.php")) as $f) {
    require_once $f;
}

try {
    FFI::scope(EmbedChat\Native::SCOPE); // already loaded by `ffi.preload` (see README)
    return;
} catch (FFI\Exception) {
}
$lib = EmbedChat\Native::findLibrary(($l = getenv('EMBEDCHAT_LIB')) === false || $l === '' ? null : $l);
$header = EmbedChat\Native::scopedHeader($lib);
// FFI::load reads a file; one per distinct library path and header.
$file = sys_get_temp_dir() . '/embedchat-preload-' . md5($header) . '.h';
if (!is_file($file) || file_get_contents($file) !== $header) {
    file_put_contents($file, $header, LOCK_EX);
}
FFI::load($file);
