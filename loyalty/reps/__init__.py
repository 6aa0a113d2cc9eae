"""Reps: company-owned relationships. Who serves each member, how that changes, and the
service reps give.

- `settings`: the ownership rules (`rep_settings`) and rep levels.
- `assignments`: the one writer of assignments (`reassign`), the checks every move passes,
  a manager's transfer, a member's history.
- `pool`, `reclaim`, `handovers`, `swaps`: the four ways members change hands.
- `service`: members who outgrew their rep's level.
- `teams`: named service teams of upper-tier members.
- `notices`: what staff are told.
- `contacts`, `follow_ups`: the contact log and who to contact next.
- `performance`, `rotation`, `team_figures`: lifecycle, scorecards, book rotation and the
  console's team figures.

The visit brief reads several domains, so it lives in `loyalty.workflows.brief`."""
