"""Which of a user's activities feed which of a model's classes: one rule for every job (Qt-free).

Every job that trains or evaluates a model on a user's labelled data maps activities with
:func:`class_map`: ``odlstudio personalize`` (:func:`app.core.personalize.load_user_data`), training
rounds and "Simulate on my windows" (:func:`app.core.rounds.model_recordings`), and LOSO and
pretraining, which select a dataset's activities through :func:`app.core.datasets.resolve_activities`.

* Names are compared **canonically** (:func:`app.core.datasets.canonical_activity`: case, spaces and
  hyphens, synonyms such as ``running`` -> ``jogging``), so ST's ``Stationary`` is the app's
  ``stationary`` and a label ``Walking`` is the activity ``walking``.
* **Default**: each class gathers the activity of its own name and, for a class that merges others
  (:data:`app.core.datasets.MERGES`), those too, unless they are classes of the model themselves:
  ``Stairs`` <- stairs + upstairs + downstairs, ``Stationary`` <- stationary + sitting + standing.
* **Explicit** (``--activities``): a label-set name (:data:`app.core.datasets.LABEL_SETS`), or a comma
  list (or sequence) of ``class`` (a subset, with the default sources) or ``class=activity+activity``,
  or a ``{class: [activities]}`` mapping.  Every class named must be a class of the model, and an
  activity feeds at most one class.
* Outputs keep the **model's own spelling** (``Stationary``, not ``stationary``), so windows are
  labelled with the model's class names and indices follow its softmax order.

An unsplit ``stairs`` label is left out for a model with ``Upstairs``/``Downstairs`` classes (it
cannot be told apart); only the dataset importer (:func:`app.core.labels.class_for_activity`) files it
under the first of them, on purpose, so that the label is kept for the user to split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from app.core.datasets import RecordingSet, Segment

ActivitySpec = Sequence[str] | Mapping[str, Sequence[str] | str] | str | None

__all__ = ["ClassMap", "ClassMapError", "Mapped", "class_map", "parse_activities"]


class ClassMapError(ValueError):
    """An activity specification that does not fit the model's classes; the message names it."""


def parse_activities(
    spec: Sequence[str] | Mapping[str, Sequence[str] | str] | str,
) -> list[tuple[str, list[str] | None]]:
    """``[(target, sources or None), ...]`` from a label-set name, a comma list / sequence of ``target``
    or ``target=src+src``, or a ``{target: sources}`` mapping (names as given, not yet canonical)."""
    from app.core.datasets import LABEL_SETS  # noqa: PLC0415

    if isinstance(spec, str):
        spec = LABEL_SETS.get(spec.strip(), None) or spec.split(",")
    out: list[tuple[str, list[str] | None]] = []
    if isinstance(spec, Mapping):
        items = [(str(t), [srcs] if isinstance(srcs, str) else list(srcs)) for t, srcs in spec.items()]
        for t, srcs in items:
            flat = [s.strip() for part in srcs for s in str(part).split("+") if s.strip()]
            if not t.strip() or not flat:
                raise ClassMapError(f"activities: {t!r}: {list(srcs)} is not a class and its source activities")
            out.append((t.strip(), flat))
        return out
    for item in spec:
        target, eq, rhs = str(item).partition("=")
        target = target.strip()
        if not target:
            if eq:
                raise ClassMapError(f"activities: {str(item).strip()!r} names no class before '='")
            continue
        if eq:
            flat = [s.strip() for s in rhs.split("+") if s.strip()]
            if not flat:
                raise ClassMapError(f"activities: {str(item).strip()!r} names no activity after '='")
            out.append((target, flat))
        else:
            out.append((target, None))
    return out


@dataclass
class Mapped:
    """A :class:`~app.core.datasets.RecordingSet` renamed to a model's classes by :meth:`ClassMap.apply`."""

    recordings: "RecordingSet"  # segments of the served classes, activity = the model's class name
    left_out: dict[str, int] = field(default_factory=dict)  # activity -> samples no class takes
    missing: list[str] = field(default_factory=list)  # classes with no data (model's spelling)

    def notes(self) -> list[str]:
        out = []
        if self.left_out:
            out.append(f"labels {', '.join(sorted(self.left_out))} are not classes of the model and were left out")
        if self.missing:
            out.append(f"no data for {', '.join(self.missing)}")
        return out


@dataclass
class ClassMap:
    """``classes`` (the model's names, softmax order) and the canonical activities each one gathers."""

    classes: tuple[str, ...]
    sources: dict[str, tuple[str, ...]]  # class -> canonical activities; only the classes mapped

    def __post_init__(self) -> None:
        self._owner = {a: c for c, acts in self.sources.items() for a in acts}

    def class_of(self, activity: str) -> str | None:
        """The class (model's spelling) ``activity`` (any spelling) feeds, or None."""
        from app.core.datasets import canonical_activity  # noqa: PLC0415

        return self._owner.get(canonical_activity(activity))

    def mapping(self, available: Iterable[str] | None = None) -> dict[str, str]:
        """``{canonical activity: class}``, restricted to the ``available`` activities if given."""
        if available is None:
            return dict(self._owner)
        from app.core.datasets import canonical_activity  # noqa: PLC0415

        have = {canonical_activity(a) for a in available}
        return {a: c for a, c in self._owner.items() if a in have}

    def unserved(self, available: Iterable[str]) -> list[str]:
        """The mapped classes none of the ``available`` activities feeds (model order)."""
        fed = set(self.mapping(available).values())
        return [c for c in self.classes if c in self.sources and c not in fed]

    def describe(self) -> str:
        """``"Jogging <- jogging; Stationary <- stationary + sitting + standing; ..."`` (model order)."""
        return "; ".join(f"{c} <- {' + '.join(self.sources[c])}" for c in self.classes if c in self.sources)

    def to_dict(self) -> dict[str, list[str]]:
        return {c: list(self.sources[c]) for c in self.classes if c in self.sources}

    def apply(self, rs: "RecordingSet") -> Mapped:
        """``rs`` with every segment renamed to its class (model's spelling); segments no class takes are
        left out and counted.  Raises :class:`ClassMapError` when no segment fits any class."""
        from app.core.datasets import RecordingSet, canonical_activity, order_activities  # noqa: PLC0415

        segs: list[Segment] = []
        left_out: dict[str, int] = {}
        for s in rs.segments:
            c = self._owner.get(canonical_activity(s.activity))
            if c is None:
                left_out[s.activity] = left_out.get(s.activity, 0) + s.n
            else:
                segs.append(s if s.activity == c else replace(s, activity=c))
        if not segs:
            have = order_activities({canonical_activity(s.activity) for s in rs.segments})
            raise ClassMapError(
                f"none of the activities ({', '.join(have) or 'no data'}) is a class of the model ({self.describe()})"
            )
        out = RecordingSet(segs, rs.source, rs.units, list(rs.skipped), list(rs.notes))
        fed = {s.activity for s in segs}
        return Mapped(out, left_out, [c for c in self.classes if c in self.sources and c not in fed])


def class_map(classes: Sequence[str], activities: ActivitySpec = None) -> ClassMap:
    """The mapping of activities to ``classes`` (see the module doc): the default for every class, or
    the ``activities`` specification.  Raises :class:`ClassMapError` naming a target that is not one of
    the ``classes``, or an activity given to two classes."""
    from app.core.datasets import MERGES, canonical_activity  # noqa: PLC0415

    classes = tuple(str(c) for c in classes)
    if not classes:
        raise ClassMapError("the model has no classes")
    by_canon: dict[str, str] = {}
    for c in classes:
        by_canon.setdefault(canonical_activity(c), c)
    entries = [(c, None) for c in classes] if activities is None else parse_activities(activities)
    if not entries:
        raise ClassMapError("no activities selected")
    unknown = [t for t, _ in entries if canonical_activity(t) not in by_canon]
    if unknown:
        raise ClassMapError(f"{', '.join(unknown)}: not classes of the model (classes: {', '.join(classes)})")
    sources: dict[str, list[str]] = {}
    for t, srcs in entries:
        canon = canonical_activity(t)
        if srcs is None:
            acts = [canon] + [m for m in MERGES.get(canon, ()) if m not in by_canon]
        else:
            acts = [canonical_activity(s) for s in srcs]
        have = sources.setdefault(by_canon[canon], [])
        have += [a for a in acts if a not in have]
    owner: dict[str, str] = {}
    for c, acts in sources.items():
        for a in acts:
            if owner.setdefault(a, c) != c:
                raise ClassMapError(f"activity {a!r} is mapped to two classes, {owner[a]} and {c}")
    return ClassMap(classes, {c: tuple(sources[c]) for c in classes if c in sources})
