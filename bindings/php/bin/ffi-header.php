<?php
/*
 * Writes the header for php.ini's `ffi.preload` (needed when PHP-FPM starts as root, where
 * FFI::load in an opcache preload script is refused) for a library at any path:
 *
 *   php bindings/php/bin/ffi-header.php /opt/chat/lib/libembedchat.so.2 > /etc/php/embedchat-ffi.h
 *   ffi.preload=/etc/php/embedchat-ffi.h
 *
 * An installed library comes with this header already: PREFIX/share/embedchat/2/embedchat-ffi.h
 * (scripts/install; /usr/share/embedchat/2/embedchat-ffi.h from the .deb). Without an argument
 * the library is found as Native::findLibrary says.
 */
declare(strict_types=1);

require dirname(__DIR__) . '/autoload.php';

if (isset($argv[1])) {
    $lib = $argv[1];
    if (!is_file($lib)) {
        fwrite(STDERR, "no library at $lib\n");
        exit(1);
    }
    // Absolute, but symlinks kept: a soname link (libembedchat.so.2) follows upgrades.
    $lib = str_starts_with($lib, '/') ? $lib : getcwd() . '/' . $lib;
} else {
    $lib = EmbedChat\Native::findLibrary();
}
echo EmbedChat\Native::scopedHeader($lib);
