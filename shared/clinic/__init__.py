"""The clinic's side of SkinSense, shared by the worker (which sends alerts) and the bot (which handles the
clinicians' buttons and commands): the alert store (store.py), what clinicians read (views.py), their buttons
and allow-list (buttons.py), and the working-hours calendar of reminders and escalations (calendar.py)."""
