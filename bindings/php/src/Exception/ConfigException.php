<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** chat_start refused the configuration; the message names the key and why. */
final class ConfigException extends EmbedChatException
{
}
