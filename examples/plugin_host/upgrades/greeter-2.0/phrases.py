GREETING = "Good morning"
FAREWELL = "See you"
