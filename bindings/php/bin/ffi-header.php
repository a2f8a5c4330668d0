<?php
/*
 * Writes the header for php.ini's `ffi.preload` (needed when PHP-FPM starts as root, where
 * FFI::load in an opcache preload script is refused):
 *
 *   php bindings/php/bin/ffi-header.php /usr/local/lib/libembedchat.so > /etc/php/embedchat-ffi.h
 *   ffi.preload=/etc/php/embedchat-ffi.h
 */
declare(strict_types=1);

require dirname(__DIR__) . '/autoload.php';

$lib = $argv[1] ?? EmbedChat\Native::findLibrary();
if (!is_file($lib)) {
    fwrite(STDERR, "no library at $lib\n");
    exit(1);
}
echo EmbedChat\Native::scopedHeader(realpath($lib));
