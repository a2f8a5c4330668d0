<?php
// For sites without Composer: require this file instead of vendor/autoload.php.
declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'EmbedChat\\') && !str_starts_with($class, 'EmbedChat\\Tests\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen('EmbedChat\\'))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
