"""Domain errors: each says what is wrong and how to fix it, with the facts a client needs."""

from __future__ import annotations

from typing import Any


class FleetError(Exception):
    """Base for every error the engine raises on purpose."""

    code = "fleet_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def as_dict(self) -> dict[str, Any]:
        """Return the error as plain data for JSON output."""
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.field:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(FleetError):
    """The caller passed a value that can never be right (end before start, naive time)."""

    code = "invalid_input"


class NotFound(FleetError):
    """A referenced vehicle, location, category, block or user does not exist."""

    code = "not_found"


class BookingConflict(FleetError):
    """The period collides with existing blocks; details name them."""

    code = "booking_conflict"


class StaleVersion(FleetError):
    """Someone changed the vehicle since the caller looked; details carry the current state."""

    code = "stale_version"


class InvalidTransition(FleetError):
    """The status change is not allowed from the current status; details list the allowed ones."""

    code = "invalid_transition"


class RollbackRefused(FleetError):
    """Rolling back would silently undo later changes, or there is nothing to restore."""

    code = "rollback_refused"


class HoldExpired(FleetError):
    """The hold ran out (or was released) before it was converted."""

    code = "hold_expired"


class HoldTaken(FleetError):
    """The hold is another user's: only its holder converts or extends it; details name them."""

    code = "hold_taken"


class HoldConverted(FleetError):
    """The hold was already booked; details carry the reservation it became."""

    code = "hold_converted"


class NotAvailable(FleetError):
    """The vehicle cannot be booked at all now (inactive, out of service, overdue, elsewhere)."""

    code = "not_available"


class NotAuthenticated(FleetError):
    """No valid credentials: wrong password, unknown, expired or revoked token."""

    code = "not_authenticated"


class Forbidden(FleetError):
    """The user is known but their role does not allow this."""

    code = "forbidden"


class IdempotencyMismatch(FleetError):
    """An Idempotency-Key was reused for a different request."""

    code = "idempotency_mismatch"


class Locked(FleetError):
    """Another session holds a lock this work needs, for longer than the lock timeout."""

    code = "locked"
