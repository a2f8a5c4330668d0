<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** The connection is not reading; its backlog is full and it is being closed. */
final class QueueFullException extends EmbedChatException
{
}
