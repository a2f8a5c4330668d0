<?php
/*
 * Loads embedchat the way a site does after installing the library: the PHP package from a
 * copy (as Composer puts it in vendor/, so no repository build is next to it) and no
 * EMBEDCHAT_LIB. Starts an engine, then prints where the library came from:
 *
 *   php tests/php/installed_probe.php PACKAGE_DIR
 *   → "scope yes|no" (loaded by ffi.preload), "found PATH" (Native::findLibrary),
 *     "mapped PATH" (the file in this process), "port N"
 */
declare(strict_types=1);

require $argv[1] . '/autoload.php';

try {
    FFI::scope(EmbedChat\Native::SCOPE);
    echo "scope yes\n";
} catch (FFI\Exception) {
    echo "scope no\n";
    echo 'found ', EmbedChat\Native::findLibrary(), "\n";
}
$chat = EmbedChat\Engine::start(['listen' => '127.0.0.1:0']);
foreach (file('/proc/self/maps', FILE_IGNORE_NEW_LINES) ?: [] as $line) {
    if (str_contains($line, '/libembedchat.so')) {
        echo 'mapped ', strstr($line, '/'), "\n";
        break;
    }
}
echo 'port ', $chat->port(), "\n";
$chat->stop();
