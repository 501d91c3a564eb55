"""Reference data for demo fleets: cities, names, phone and licence formats, vehicles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    code: str
    city: str
    tz: str
    country: str
    plate: str  # L = letter, D = digit, anything else literal
    airport: tuple[str, str, float, float]
    downtown: tuple[str, str, float, float]


# Airports first, then downtown branches: a small demo gets one lot per city, nearby cities
# first so one-way rentals and transfers have somewhere to go.
CITIES = (
    City("BER", "Berlin", "Europe/Berlin", "DE", "B LL DDDD",
          ("Berlin Brandenburg Airport", "Melli-Beese-Ring 1, 12529 Schönefeld", 52.3667, 13.5033),
          ("Berlin Hauptbahnhof", "Europaplatz 1, 10557 Berlin", 52.5251, 13.3694)),
    City("MUC", "Munich", "Europe/Berlin", "DE", "M LL DDDD",
          ("Munich Airport", "Nordallee 25, 85356 München-Flughafen", 48.3538, 11.7861),
          ("München Hauptbahnhof", "Bayerstraße 10a, 80335 München", 48.1402, 11.5600)),
    City("HAM", "Hamburg", "Europe/Berlin", "DE", "HH LL DDDD",
          ("Hamburg Airport", "Flughafenstraße 1-3, 22335 Hamburg", 53.6304, 9.9882),
          ("Hamburg Hauptbahnhof", "Hachmannplatz 16, 20099 Hamburg", 53.5530, 10.0069)),
    City("VIE", "Vienna", "Europe/Vienna", "AT", "W DDDDD L",
          ("Vienna International Airport", "Wien-Flughafen, 1300 Schwechat", 48.1103, 16.5697),
          ("Wien Hauptbahnhof", "Am Hauptbahnhof 1, 1100 Wien", 48.1852, 16.3760)),
    City("ZRH", "Zurich", "Europe/Zurich", "CH", "ZH DDDDDD",
          ("Zurich Airport", "Flughafenstrasse, 8058 Zürich", 47.4582, 8.5555),
          ("Zürich Hauptbahnhof", "Bahnhofplatz 15, 8001 Zürich", 47.3779, 8.5403)),
    City("PAR", "Paris", "Europe/Paris", "FR", "LL-DDD-LL",
          ("Paris Charles de Gaulle Airport", "95700 Roissy-en-France", 49.0097, 2.5479),
          ("Paris Gare de Lyon", "Place Louis-Armand, 75012 Paris", 48.8443, 2.3744)),
    City("AMS", "Amsterdam", "Europe/Amsterdam", "NL", "LL-DDD-L",
          ("Amsterdam Schiphol Airport", "Evert van de Beekstraat 202, 1118 CP Schiphol",
           52.3105, 4.7683),
          ("Amsterdam Centraal", "Stationsplein, 1012 AB Amsterdam", 52.3791, 4.9003)),
    City("NYC", "New York", "America/New_York", "US", "LLL-DDDD",
          ("New York JFK Airport", "JFK Access Rd, Jamaica, NY 11430", 40.6413, -73.7781),
          ("Manhattan Midtown", "W 40th St, New York, NY 10018", 40.7549, -73.9840)),
    City("CHI", "Chicago", "America/Chicago", "US", "LL DDDDD",
          ("Chicago O'Hare Airport", "10000 W O'Hare Ave, Chicago, IL 60666", 41.9742, -87.9073),
          ("Chicago Loop", "233 S Wacker Dr, Chicago, IL 60606", 41.8827, -87.6233)),
    City("DEN", "Denver", "America/Denver", "US", "LLL-LDD",
          ("Denver International Airport", "8500 Peña Blvd, Denver, CO 80249", 39.8561, -104.6737),
          ("Denver Union Station", "1701 Wynkoop St, Denver, CO 80202", 39.7527, -105.0002)),
    City("FRA", "Frankfurt", "Europe/Berlin", "DE", "F LL DDDD",
          ("Frankfurt Airport", "Hugo-Eckener-Ring, 60549 Frankfurt am Main", 50.0379, 8.5622),
          ("Frankfurt Hauptbahnhof", "Am Hauptbahnhof, 60329 Frankfurt am Main", 50.1071, 8.6638)),
    City("LON", "London", "Europe/London", "GB", "LLDD LLL",
          ("London Heathrow Airport", "Hounslow TW6 1QG", 51.4700, -0.4543),
          ("London King's Cross", "Euston Rd, London N1C 4QP", 51.5308, -0.1238)),
    City("MAD", "Madrid", "Europe/Madrid", "ES", "DDDD LLL",
          ("Madrid-Barajas Airport", "Av. de la Hispanidad, 28042 Madrid", 40.4983, -3.5676),
          ("Madrid Atocha", "Pl. del Emperador Carlos V, 28045 Madrid", 40.4066, -3.6892)),
    City("ROM", "Rome", "Europe/Rome", "IT", "LL DDDLL",
          ("Rome Fiumicino Airport", "Via dell'Aeroporto di Fiumicino, 00054 Fiumicino",
           41.8003, 12.2389),
          ("Roma Termini", "Piazza dei Cinquecento, 00185 Roma", 41.9010, 12.5018)),
    City("LAX", "Los Angeles", "America/Los_Angeles", "US", "DLLLDDD",
          ("Los Angeles International Airport", "1 World Way, Los Angeles, CA 90045",
           33.9416, -118.4085),
          ("Downtown Los Angeles", "800 N Alameda St, Los Angeles, CA 90012", 34.0522, -118.2437)),
    City("PHX", "Phoenix", "America/Phoenix", "US", "LLL DDDD",
          ("Phoenix Sky Harbor Airport", "3400 E Sky Harbor Blvd, Phoenix, AZ 85034",
           33.4342, -112.0116),
          ("Downtown Phoenix", "401 W Washington St, Phoenix, AZ 85003", 33.4484, -112.0740)),
    City("YTO", "Toronto", "America/Toronto", "CA", "LLLL DDD",
          ("Toronto Pearson Airport", "6301 Silver Dart Dr, Mississauga, ON L5P 1B2",
           43.6777, -79.6248),
          ("Toronto Union Station", "65 Front St W, Toronto, ON M5J 1E6", 43.6453, -79.3806)),
    City("SYD", "Sydney", "Australia/Sydney", "AU", "LLDDLL",
          ("Sydney Airport", "Mascot NSW 2020", -33.9399, 151.1753),
          ("Sydney Central", "Eddy Ave, Haymarket NSW 2000", -33.8832, 151.2070)),
)  # fmt: skip

# One-way rentals and transfers only between lots a driver can reach in a day.
PARTNER_KM = 800.0

PHONES = {
    "DE": "+49 15D DDDDDDD", "AT": "+43 66D DDDDDDD", "CH": "+41 7D DDD DD DD",
    "FR": "+33 6 DD DD DD DD", "NL": "+31 6 DDDDDDDD", "US": "+1 DDD-555-DDDD",
    "CA": "+1 DDD-555-DDDD", "GB": "+44 7DDD DDDDDD", "ES": "+34 6DD DDD DDD",
    "IT": "+39 3DD DDD DDDD", "AU": "+61 4DD DDD DDD",
}  # fmt: skip
LICENCES = {
    "DE": "LDDDLLLDLDD", "AT": "DDDDDDDD", "CH": "LLL DDDDDD", "FR": "DDLLDDDDDDDD",
    "NL": "DDDDDDDDDD", "US": "LDDD-DDDD-DDDD", "CA": "LDDDD-DDDDD-DDDDD", "GB": "LLLLLDDDDDDLLDLL",
    "ES": "DDDDDDDDL", "IT": "LLDDDDDDDL", "AU": "DDDDDDDDD",
}  # fmt: skip

FIRST_NAMES = (
    "Anna", "Lukas", "Sophie", "Jonas", "Marie", "Felix", "Lena", "Paul", "Emma", "Leon", "Mia",
    "Noah", "Hannah", "Elias", "Laura", "Maximilian", "Julia", "Finn", "Sarah", "Jürgen", "Zoë",
    "François", "Chloé", "Lucas", "Camille", "Hugo", "Léa", "Daan", "Sanne", "Bram", "Femke",
    "James", "Olivia", "Michael", "Emily", "David", "Jessica", "Daniel", "Ashley", "Carlos",
    "María", "José", "Lucía", "Giulia", "Marco", "Francesca", "Luca", "Aisha", "Omar", "Mehmet",
    "Elif", "Wei", "Mei", "Hiroshi", "Yuki", "Priya", "Arjun", "Olga", "Dmitri", "Zofia",
    "Tomasz", "Ingrid", "Lars", "Siobhan", "Liam", "Chloe", "Jack", "Isla", "Ethan", "Grace",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Gruber", "Huber",
    "Steiner", "Moser", "Keller", "Meier", "Brunner", "Martin", "Bernard", "Dubois", "Lefèvre",
    "Moreau", "de Jong", "Jansen", "de Vries", "van Dijk", "Bakker", "Smith", "Johnson",
    "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "García", "Fernández", "López", "Rossi",
    "Russo", "Ferrari", "Esposito", "Bianchi", "Yılmaz", "Kaya", "Nowak", "Kowalski", "Novák",
    "Chen", "Wang", "Tanaka", "Sato", "Patel", "Singh", "Kim", "Nguyen", "Ivanova", "Andersen",
    "Nielsen", "O'Brien", "Murphy", "Kelly", "Walsh",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

FEATURES = (
    "automatic", "gps", "child_seat", "bluetooth", "awd", "electric", "hybrid", "roof_rack",
    "seven_seats", "heated_seats", "apple_carplay",
)  # fmt: skip

# World manufacturer identifiers: the first three characters of a real VIN.
WMI = {
    "Volkswagen": "WVW", "BMW": "WBA", "Mercedes-Benz": "W1K", "Audi": "WAU", "Toyota": "JTD",
    "Ford": "WF0", "Tesla": "5YJ", "Hyundai": "KMH", "Kia": "KNA", "Renault": "VF1",
    "Peugeot": "VF3", "Fiat": "ZFA", "Opel": "W0L", "Skoda": "TMB", "Volvo": "YV1",
    "Nissan": "SJN", "Mazda": "JMZ", "Porsche": "WP0", "Land Rover": "SAL", "Polestar": "LPS",
    "Honda": "SHH", "Jeep": "1C4", "Seat": "VSS",
}  # fmt: skip


@dataclass(frozen=True)
class CategorySpec:
    code: str
    name: str
    prep_minutes: int
    hourly: str
    daily: str
    grace_minutes: int
    seats: int
    share: int  # percent of the fleet
    models: tuple[tuple[str, str], ...]
    features: dict[str, float]  # feature -> probability


CATEGORIES = (
    CategorySpec("ECON", "Economy", 30, "9.90", "39.00", 29, 5, 20,
                  (("Volkswagen", "Polo"), ("Toyota", "Yaris"), ("Renault", "Clio"),
                   ("Opel", "Corsa"), ("Peugeot", "208"), ("Fiat", "500"), ("Seat", "Ibiza")),
                  {"automatic": 0.3, "bluetooth": 0.85, "apple_carplay": 0.5, "gps": 0.2,
                   "child_seat": 0.1, "heated_seats": 0.15}),
    CategorySpec("COMP", "Compact", 30, "11.90", "49.00", 29, 5, 22,
                  (("Volkswagen", "Golf"), ("Ford", "Focus"), ("Toyota", "Corolla"),
                   ("Opel", "Astra"), ("Skoda", "Octavia"), ("Honda", "Civic"), ("Mazda", "3")),
                  {"automatic": 0.5, "bluetooth": 0.95, "apple_carplay": 0.65, "gps": 0.4,
                   "child_seat": 0.15, "hybrid": 0.15, "heated_seats": 0.3}),
    CategorySpec("MID", "Intermediate", 45, "14.90", "62.00", 30, 5, 15,
                  (("Volkswagen", "Passat"), ("Skoda", "Superb"), ("Toyota", "Camry"),
                   ("Mazda", "6"), ("Opel", "Insignia"), ("Peugeot", "508")),
                  {"automatic": 0.8, "bluetooth": 1.0, "apple_carplay": 0.75, "gps": 0.6,
                   "child_seat": 0.15, "hybrid": 0.25, "heated_seats": 0.5}),
    CategorySpec("EV", "Electric", 60, "15.90", "69.00", 45, 5, 8,
                  (("Tesla", "Model 3"), ("Tesla", "Model Y"), ("Volkswagen", "ID.3"),
                   ("Volkswagen", "ID.4"), ("Hyundai", "Ioniq 5"), ("Kia", "EV6"),
                   ("Polestar", "2"), ("Renault", "Megane E-Tech")),
                  {"electric": 1.0, "automatic": 1.0, "bluetooth": 1.0, "gps": 1.0,
                   "apple_carplay": 0.8, "heated_seats": 0.6, "child_seat": 0.1}),
    CategorySpec("SUV", "SUV", 45, "17.90", "79.00", 30, 5, 15,
                  (("Volkswagen", "Tiguan"), ("Toyota", "RAV4"), ("Ford", "Kuga"),
                   ("Nissan", "Qashqai"), ("Hyundai", "Tucson"), ("Kia", "Sportage"),
                   ("Jeep", "Compass"), ("Skoda", "Kodiaq"), ("Mazda", "CX-5")),
                  {"automatic": 0.8, "bluetooth": 1.0, "awd": 0.5, "roof_rack": 0.25, "gps": 0.6,
                   "apple_carplay": 0.7, "child_seat": 0.25, "heated_seats": 0.5, "hybrid": 0.2,
                   "seven_seats": 0.2}),
    CategorySpec("PREM", "Premium", 60, "24.90", "109.00", 45, 5, 10,
                  (("BMW", "3 Series"), ("Mercedes-Benz", "C-Class"), ("Audi", "A4"),
                   ("Volvo", "S60"), ("BMW", "5 Series"), ("Mercedes-Benz", "E-Class"),
                   ("Audi", "A6")),
                  {"automatic": 1.0, "bluetooth": 1.0, "gps": 1.0, "heated_seats": 1.0,
                   "apple_carplay": 0.85, "awd": 0.35, "hybrid": 0.15, "child_seat": 0.1}),
    CategorySpec("VAN", "Passenger van", 60, "22.90", "99.00", 30, 9, 6,
                  (("Volkswagen", "Transporter"), ("Mercedes-Benz", "Vito"),
                   ("Ford", "Transit Custom"), ("Renault", "Trafic"), ("Opel", "Vivaro")),
                  {"seven_seats": 1.0, "bluetooth": 0.9, "gps": 0.5, "roof_rack": 0.3,
                   "automatic": 0.5, "child_seat": 0.3, "apple_carplay": 0.5}),
    CategorySpec("LUX", "Luxury", 90, "44.90", "219.00", 59, 5, 4,
                  (("BMW", "7 Series"), ("Mercedes-Benz", "S-Class"), ("Audi", "A8"),
                   ("Porsche", "Panamera"), ("Land Rover", "Range Rover"),
                   ("Porsche", "Cayenne")),
                  {"automatic": 1.0, "bluetooth": 1.0, "gps": 1.0, "heated_seats": 1.0,
                   "apple_carplay": 1.0, "awd": 0.6, "hybrid": 0.2}),
)  # fmt: skip

COLOURS = (
    ("White", 24), ("Black", 20), ("Grey", 18), ("Silver", 12), ("Blue", 10), ("Red", 8),
    ("Green", 2), ("Brown", 2), ("Beige", 2), ("Orange", 1), ("Yellow", 1),
)  # fmt: skip
# Rental lengths in days (0 = a few hours), weighted like a real booking mix.
RENTAL_DAYS = (0,) * 5 + (1,) * 17 + (2,) * 19 + (3,) * 17 + (4,) * 12 + (5,) * 10 + (7,) * 10 \
    + (10,) * 5 + (14,) * 3 + (21,) * 1 + (28,) * 1  # fmt: skip
RETURN_SHIFT = (-180, -120, -60, 0, 0, 0, 60, 120, 180)
MAINTENANCE_MINUTES = (120, 180, 240, 360, 480, 480, 1440, 2880, 4320)
MAINTENANCE_NOTES = (
    "oil service", "annual inspection", "tyre change", "brake pads", "windscreen chip repair",
    "recall campaign", "air-conditioning service", "bodywork: scratch on rear bumper",
    "battery check", "interior deep clean",
)  # fmt: skip
