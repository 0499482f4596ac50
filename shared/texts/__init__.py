"""Every text a patient or clinician reads (plain text or Telegram HTML), for review and translation, with the
rendering that composes them: patient.py (welcome, help, consent, refusals, notices), result.py (a result, an
album, /history), questionnaire.py, clinician.py (alerts and the clinicians' commands)."""
