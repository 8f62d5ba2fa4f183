"""Requests and results: frozen attrs classes, validated when built.

Bad input fails here, at construction, before anything is sent. The one private cattrs
converter reads API answers: unknown JSON fields are ignored, unknown statuses and error
names are kept as strings (the API grows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs
import cattrs

from fashn_async._answers import output_problem, read_status
from fashn_async._error_map import prediction_error_from_payload
from fashn_async._images import ImageInput, check_image_input
from fashn_async._names import TERMINAL_STATUSES
from fashn_async._validators import (
    INT64_MAX,
    check_bool,
    check_choice,
    check_json,
    check_number,
    check_string,
    is_finite_number,
    shorten,
)
from fashn_async.errors import APIError, InvalidRequestError, PredictionCanceledError

__all__ = [
    "CATEGORIES",
    "GARMENT_PHOTO_TYPES",
    "Credits",
    "ModelRequest",
    "Prediction",
    "PredictionStatus",
    "Request",
    "TryOnRequest",
    "converter",
    "status_answer",
]

Category = Literal["tops", "bottoms", "one-pieces"]
GarmentPhotoType = Literal["auto", "flat-lay", "model"]
CATEGORIES: Final = ("tops", "bottoms", "one-pieces")
GARMENT_PHOTO_TYPES: Final = ("auto", "flat-lay", "model")


def _choice(choices: tuple[str, ...]) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice(attribute.name, value, choices)

    return check


def _check_bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_bool(attribute.name, value)


def _number(low: float, high: float, *, integer: bool = False) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_number(attribute.name, value, low, high, integer=integer)

    return check


def _check_image(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_image_input(attribute.name, value)


@attrs.frozen(kw_only=True)
class TryOnRequest:
    """One virtual try-on, with every field of the v1 reference and its default.

    Args:
        model_image: The person: URL, data URI, path, bytes or binary file.
        garment_image: The garment, in any of the same forms.
        category: ``"tops"``, ``"bottoms"`` or ``"one-pieces"``.
        nsfw_filter: Run the NSFW filter on the inputs.
        cover_feet: Let long garments cover the feet.
        adjust_hands: Let the hands change (gloves, pockets, long sleeves).
        restore_background: Extra steps to keep the background; slower.
        restore_clothes: Extra steps to keep clothes that are not swapped.
        garment_photo_type: ``"auto"``, ``"flat-lay"`` or ``"model"``.
        long_top: Tune for long tops (tunics, coats).
        guidance_scale: 1.5 to 3; higher keeps detail, risks saturation.
        timesteps: Diffusion steps, 10 to 50.
        seed: Fixes randomness for reproducible results; 0 to 2**63 - 1.
        num_samples: Images to generate, 1 to 4; each counts as a generation.

    Ranges: ``guidance_scale``, ``timesteps`` and ``num_samples`` as the v1 reference
    states them (fashn-api-v1.txt, "Range:"); ``seed`` is typed ``int`` there with no
    range, so it takes what an API server stores as an int: 0 to 2**63 - 1 (negative
    seeds are not documented anywhere). Every field is checked when the request is built.

    Raises:
        InvalidRequestError: a field is out of its range or of the wrong type; the
            message names the field, the value and what is accepted.
        ImageInputError: an image value is unusable (see ``ImageInput``).
    """

    model_image: ImageInput = attrs.field(validator=_check_image)
    garment_image: ImageInput = attrs.field(validator=_check_image)
    category: Category = attrs.field(validator=_choice(CATEGORIES))
    nsfw_filter: bool = attrs.field(default=True, validator=_check_bool)
    cover_feet: bool = attrs.field(default=False, validator=_check_bool)
    adjust_hands: bool = attrs.field(default=False, validator=_check_bool)
    restore_background: bool = attrs.field(default=False, validator=_check_bool)
    restore_clothes: bool = attrs.field(default=False, validator=_check_bool)
    garment_photo_type: GarmentPhotoType = attrs.field(
        default="auto", validator=_choice(GARMENT_PHOTO_TYPES)
    )
    long_top: bool = attrs.field(default=False, validator=_check_bool)
    guidance_scale: float = attrs.field(default=2.0, validator=_number(1.5, 3.0))
    timesteps: int = attrs.field(default=50, validator=_number(10, 50, integer=True))
    seed: int = attrs.field(default=42, validator=_number(0, INT64_MAX, integer=True))
    num_samples: int = attrs.field(default=1, validator=_number(1, 4, integer=True))

    @property
    def generations(self) -> int:
        """How many generations this request counts against the rate limit."""
        return self.num_samples

    def image_fields(self) -> dict[str, ImageInput]:
        """The image-valued fields, by name."""
        return {"model_image": self.model_image, "garment_image": self.garment_image}

    def body(self, images: Mapping[str, str]) -> dict[str, Any]:
        """The flat v1 JSON body, with images already turned into URLs or data URIs."""
        body = attrs.asdict(self, recurse=False)
        body.update(images)
        return body


#: Model names as NOTES.md lists them: lowercase letters, digits, dots and hyphens.
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")

#: Inputs every model shares (NOTES.md "Current request shape"; the emulator reads the
#: same), each with its type and range. ``seed`` as in TryOnRequest.
_COMMON_INPUTS: dict[str, Callable[[str, Any], None]] = {
    "seed": lambda f, v: check_number(f, v, 0, INT64_MAX, integer=True),
    "num_samples": lambda f, v: check_number(f, v, 1, 4, integer=True),
    "output_format": lambda f, v: check_choice(f, v, ("png", "jpeg")),
    "return_base64": check_bool,
}
#: tryon-v1.6's own inputs (NOTES.md).
_TRYON_INPUTS: dict[str, Callable[[str, Any], None]] = {
    **_COMMON_INPUTS,
    "category": lambda f, v: check_choice(f, v, ("auto", *CATEGORIES)),
    "garment_photo_type": lambda f, v: check_choice(f, v, GARMENT_PHOTO_TYPES),
    "mode": lambda f, v: check_choice(f, v, ("performance", "balanced", "quality")),
    "moderation_level": lambda f, v: check_choice(f, v, ("conservative", "permissive", "none")),
    "segmentation_free": check_bool,
}


#: Inputs a model cannot run without (NOTES.md lists tryon-v1.6's inputs; the v1
#: reference marks model_image and garment_image required, and the API answers 400
#: "inputs.model_image: is required" without them).
_REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {"tryon-v1.6": ("model_image", "garment_image")}


def _check_model_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_string("model_name", value, max_length=64)
    if not _MODEL_NAME.fullmatch(value):
        raise InvalidRequestError(
            "model_name: must be a model name such as 'tryon-v1.6' (lowercase letters, "
            f"digits, dots and hyphens), got {shorten(value)}",
            name="InvalidRequest",
        )


def _check_inputs(instance: ModelRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"inputs: must be a mapping of input names to values, got {shorten(value)}",
            name="InvalidRequest",
        )
    _check_input_values(instance.model_name, value, images=True)


def _check_input_values(model_name: str, value: Mapping[str, Any], *, images: bool) -> None:
    """Every input against its rule, required ones present; image inputs if ``images``."""
    rules = _TRYON_INPUTS if model_name == "tryon-v1.6" else _COMMON_INPUTS
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidRequestError(
                f"inputs: keys must be strings, got {shorten(key)}", name="InvalidRequest"
            )
        check_string("inputs key", key, max_length=256)
        field = f"inputs.{key}"
        if _is_image_key(key):
            if images:
                check_image_input(field, item)
        elif key in rules:
            rules[key](field, item)
        else:
            check_json(field, item)
    for key in _REQUIRED_INPUTS.get(model_name, ()):
        if value.get(key) is None:
            raise InvalidRequestError(
                f"inputs.{key}: is required for {model_name} (NOTES.md)", name="InvalidRequest"
            )


def _is_image_key(key: str) -> bool:
    return key.endswith("_image") or key == "image"


def _frozen_inputs(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class ModelRequest:
    """A request in the current ``{"model_name", "inputs"}`` shape, for any model.

    Inputs named ``*_image`` (or ``image``) take every image form ``TryOnRequest`` takes
    and are encoded the same way; the rest is sent as JSON, so each must be a JSON value
    (finite numbers, no sets, bytes or other objects). Inputs NOTES.md documents are
    checked against their documented type and range: for every model ``seed``
    (0 to 2**63 - 1), ``num_samples`` (1 to 4), ``output_format`` (png, jpeg),
    ``return_base64`` (bool); for tryon-v1.6 also ``category``, ``garment_photo_type``,
    ``mode``, ``moderation_level`` and ``segmentation_free``.

    Args:
        model_name: e.g. ``"tryon-v1.6"``, ``"tryon-max"``, ``"background-remove"``.
        inputs: The model's inputs, as documented for that model.

    Raises:
        InvalidRequestError: a value breaks its rule, or an input the model requires is
            missing (tryon-v1.6: ``model_image`` and ``garment_image``); the message
            names the input (``inputs.seed``, ``inputs.a[2]``), the value and what is
            accepted. ``inputs`` is checked again when the request is sent, so a value
            changed after construction is refused too, before anything is sent.
        ImageInputError: an image input is unusable.
    """

    model_name: str = attrs.field(validator=_check_model_name)
    inputs: Mapping[str, Any] = attrs.field(converter=_frozen_inputs, validator=_check_inputs)

    @property
    def generations(self) -> int:
        """How many generations this request counts against the rate limit."""
        samples = self.inputs.get("num_samples", 1)
        return samples if isinstance(samples, int) else 1

    def image_fields(self) -> dict[str, ImageInput]:
        """The image-valued inputs, by name."""
        return {k: v for k, v in self.inputs.items() if _is_image_key(k)}

    def body(self, images: Mapping[str, str]) -> dict[str, Any]:
        """The current-shape JSON body, with images already encoded.

        ``inputs`` is checked again here, as it is sent (images were checked as they
        were encoded): the mapping is the caller's to change after construction.

        Raises:
            InvalidRequestError: an input was changed to a value its rule refuses.
        """
        _check_input_values(self.model_name, {**self.inputs, **images}, images=False)
        return {"model_name": self.model_name, "inputs": {**self.inputs, **images}}


#: Anything ``submit``, ``run`` and ``batch`` accept as one request.
Request: TypeAlias = TryOnRequest | ModelRequest


@attrs.frozen
class Prediction:
    """A submitted prediction."""

    id: str


@attrs.frozen
class ErrorInfo:
    """The ``error`` object of a failed prediction."""

    name: str | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class PredictionStatus:
    """One answer of GET /v1/status/:id.

    ``status`` is read by :func:`~fashn_async._answers.read_status`: a documented
    status in any case, an unknown one with an error object as failed; other values
    this version does not know are kept (still running). Only completed, failed and
    canceled are terminal.
    """

    id: str
    status: str
    output: tuple[str, ...] | None = None
    error: ErrorInfo | None = None

    @property
    def done(self) -> bool:
        """True once the prediction can no longer change."""
        return self.status in TERMINAL_STATUSES

    def raise_for_status(self) -> None:
        """Raise the typed error of a failed or canceled prediction."""
        if self.status == "failed":
            info = self.error or ErrorInfo()
            raise prediction_error_from_payload(info.name, info.message, prediction_id=self.id)
        if self.status == "canceled":
            raise PredictionCanceledError("the prediction was canceled", prediction_id=self.id)


@attrs.frozen(kw_only=True)
class Credits:
    """The account's credit balance."""

    total: float
    subscription: float
    on_demand: float

    @classmethod
    def from_answer(cls, answer: Any) -> Credits:
        """The balance in GET /v1/credits' answer (``{"credits": {...}}``).

        Raises:
            APIError: the answer is not a credits object, or a balance in it is not a
                finite number (NaN, a string, null, a bool: a server's or proxy's fault).
        """
        data: Any = answer.get("credits") if isinstance(answer, dict) else None
        try:
            values = {name: data[name] for name in ("total", "subscription", "on_demand")}
        except (TypeError, KeyError) as exc:
            raise APIError("the credits answer is not a credits object") from exc
        for name, value in values.items():
            if not is_finite_number(value):
                raise APIError(f"the credits answer's {name} is {shorten(value)}, not a number")
        return cls(**values)


converter = cattrs.Converter(forbid_extra_keys=False)


def _structure_error(value: Any, _: type) -> ErrorInfo | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ErrorInfo(name=value)
    if isinstance(value, Mapping):
        name, message = value.get("name"), value.get("message")
        return ErrorInfo(
            name=name if isinstance(name, str) else None,
            message=message if isinstance(message, str) else None,
        )
    return ErrorInfo(message=str(value))


converter.register_structure_hook(ErrorInfo | None, _structure_error)


def _structure_output(value: Any, _: type) -> tuple[str, ...] | None:
    """``output`` by :func:`~fashn_async._answers.output_problem`'s rule."""
    problem = output_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return None if value is None else tuple(value)


converter.register_structure_hook(tuple[str, ...] | None, _structure_output)


def status_answer(data: Any, status_code: int, prediction_id: str) -> PredictionStatus:
    """The :class:`PredictionStatus` in a status (or cancel) answer's JSON ``data``.

    The status is read by :func:`~fashn_async._answers.read_status`: ``"Completed"``
    is completed, an unknown status with an ``error`` object is failed, any other
    unknown status is kept (still running). ``output`` is null (a ``completed``
    answer with none: a success with no outputs) or a list of non-empty strings
    (:func:`~fashn_async._answers.output_problem`).

    Raises:
        APIError: ``data`` is no status object, is about another prediction, or cannot
            be read (an ``output`` that is not null or a list of non-empty strings);
            its ``prediction_id`` is set.
    """
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise APIError(
            "the status answer is not a status object",
            status_code=status_code,
            prediction_id=prediction_id,
        )
    if data.get("id", prediction_id) != prediction_id:  # about another prediction
        raise APIError(
            f"the status answer is about prediction {shorten(data['id'])}, not this one",
            status_code=status_code,
            prediction_id=prediction_id,
        )
    problem = output_problem(data.get("output"))
    if problem is not None:
        raise APIError(
            f"the status answer is unreadable: {problem}",
            status_code=status_code,
            prediction_id=prediction_id,
        )
    status = read_status(data["status"], data.get("error"))
    try:
        return converter.structure(
            {**data, "id": prediction_id, "status": status}, PredictionStatus
        )
    except Exception as exc:  # cattrs' errors never reach callers
        raise APIError(
            f"the status answer could not be read: {exc}",
            status_code=status_code,
            prediction_id=prediction_id,
        ) from None
