"""The UI kit the tabs share (errors, caller identity, cancel switches, version and run pickers, static
scripts) and the gradio half of access control. Only UI modules import this package; logic never does."""
