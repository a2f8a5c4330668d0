<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** The listen address (or control socket) could not be bound: busy port, no permission. */
final class BindException extends EmbedChatException
{
}
