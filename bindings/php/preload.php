<?php
/*
 * opcache preload script for PHP-FPM (and other web SAPIs), where the default
 * `ffi.enable=preload` forbids FFI in requests unless it was loaded at server start:
 *
 *   opcache.enable=1
 *   opcache.preload=/path/to/embedchat/bindings/php/preload.php
 *   opcache.preload_user=www-data        ; the FPM pool's user (needed when started as root)
 *   ffi.enable=preload
 *   ; with an installed library (scripts/install, the .deb) load it with the header installed
 *   ; for this (then this script only preloads the classes):
 *   ffi.preload=/usr/share/embedchat/2/embedchat-ffi.h   ; /usr/local/share/... for scripts/install
 *   ; else the library is looked up as Native::findLibrary says (EMBEDCHAT_LIB in the pool's
 *   ; environment, env[EMBEDCHAT_LIB] = /path/to/libembedchat.so, comes first)
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
// EMBEDCHAT_LIB, this checkout's build, or the installed library (Native::findLibrary's order).
$lib = EmbedChat\Native::findLibrary();
$header = EmbedChat\Native::scopedHeader($lib);
// FFI::load reads a file; one per distinct library path and header.
$file = sys_get_temp_dir() . '/embedchat-preload-' . md5($header) . '.h';
if (!is_file($file) || file_get_contents($file) !== $header) {
    file_put_contents($file, $header, LOCK_EX);
}
FFI::load($file);
