"""Static reference data for the demo distributor: cities, people, store names, the product
catalogue, segments and the festival calendar.

Everything here is plain data; `tools.data.demo` draws from it with a seeded generator, so the
order of every list matters for determinism (do not sort or deduplicate through sets).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    region: str
    state: str
    lat: float
    lon: float
    pincode_prefix: str
    weight: float
    localities: tuple[str, ...]
    metro: bool = False


CITIES: tuple[City, ...] = (
    # North
    City(
        "Delhi",
        "North",
        "Delhi",
        28.6139,
        77.2090,
        "110",
        0.10,
        (
            "Karol Bagh",
            "Lajpat Nagar",
            "Chandni Chowk",
            "Rohini",
            "Dwarka",
            "Mayur Vihar",
            "Janakpuri",
            "Saket",
        ),
        metro=True,
    ),
    City(
        "Lucknow",
        "North",
        "Uttar Pradesh",
        26.8467,
        80.9462,
        "226",
        0.05,
        ("Hazratganj", "Aminabad", "Gomti Nagar", "Alambagh", "Indira Nagar", "Chowk"),
    ),
    City(
        "Jaipur",
        "North",
        "Rajasthan",
        26.9124,
        75.7873,
        "302",
        0.05,
        ("Malviya Nagar", "Vaishali Nagar", "Johari Bazaar", "Mansarovar", "Raja Park", "C-Scheme"),
    ),
    City(
        "Chandigarh",
        "North",
        "Chandigarh",
        30.7333,
        76.7794,
        "160",
        0.035,
        ("Sector 17", "Sector 22", "Sector 35", "Manimajra", "Sector 44"),
    ),
    # West
    City(
        "Mumbai",
        "West",
        "Maharashtra",
        19.0760,
        72.8777,
        "400",
        0.10,
        ("Dadar", "Andheri", "Borivali", "Ghatkopar", "Malad", "Bandra", "Kurla"),
        metro=True,
    ),
    City(
        "Pune",
        "West",
        "Maharashtra",
        18.5204,
        73.8567,
        "411",
        0.06,
        ("Kothrud", "Shivajinagar", "Hadapsar", "Aundh", "Camp", "Pimpri"),
    ),
    City(
        "Ahmedabad",
        "West",
        "Gujarat",
        23.0225,
        72.5714,
        "380",
        0.06,
        ("Maninagar", "Navrangpura", "Satellite", "Naroda", "Vastrapur", "Paldi"),
    ),
    City(
        "Indore",
        "West",
        "Madhya Pradesh",
        22.7196,
        75.8577,
        "452",
        0.04,
        ("Rajwada", "Vijay Nagar", "Palasia", "Sapna Sangeeta", "Bhawarkua"),
    ),
    # South
    City(
        "Bengaluru",
        "South",
        "Karnataka",
        12.9716,
        77.5946,
        "560",
        0.09,
        (
            "Jayanagar",
            "Malleshwaram",
            "Indiranagar",
            "Koramangala",
            "Rajajinagar",
            "Basavanagudi",
            "Whitefield",
        ),
        metro=True,
    ),
    City(
        "Chennai",
        "South",
        "Tamil Nadu",
        13.0827,
        80.2707,
        "600",
        0.07,
        ("T. Nagar", "Mylapore", "Adyar", "Anna Nagar", "Velachery", "Tambaram"),
        metro=True,
    ),
    City(
        "Hyderabad",
        "South",
        "Telangana",
        17.3850,
        78.4867,
        "500",
        0.07,
        ("Ameerpet", "Kukatpally", "Dilsukhnagar", "Secunderabad", "Begumpet", "Charminar"),
        metro=True,
    ),
    City(
        "Kochi",
        "South",
        "Kerala",
        9.9312,
        76.2673,
        "682",
        0.04,
        ("Ernakulam", "Edappally", "Kakkanad", "Fort Kochi", "Vyttila", "Kaloor"),
    ),
    # East
    City(
        "Kolkata",
        "East",
        "West Bengal",
        22.5726,
        88.3639,
        "700",
        0.08,
        ("Gariahat", "Salt Lake", "Behala", "Shyambazar", "Park Circus", "Dum Dum", "New Market"),
        metro=True,
    ),
    City(
        "Patna",
        "East",
        "Bihar",
        25.5941,
        85.1376,
        "800",
        0.04,
        ("Boring Road", "Kankarbagh", "Rajendra Nagar", "Patna City", "Bailey Road"),
    ),
    City(
        "Bhubaneswar",
        "East",
        "Odisha",
        20.2961,
        85.8245,
        "751",
        0.035,
        ("Saheed Nagar", "Unit 4", "Patia", "Old Town", "Nayapalli"),
    ),
    City(
        "Guwahati",
        "East",
        "Assam",
        26.1445,
        91.7362,
        "781",
        0.035,
        ("Fancy Bazaar", "Paltan Bazaar", "Dispur", "Zoo Road", "Beltola", "Chandmari"),
    ),
)

REGIONS: tuple[str, ...] = ("North", "West", "South", "East")

STREETS: tuple[str, ...] = (
    "Main Bazaar Road",
    "Station Road",
    "Gandhi Road",
    "Nehru Marg",
    "Market Lane",
    "Temple Street",
    "Church Road",
    "MG Road",
    "Subhash Chowk",
    "Old Post Office Road",
    "Bus Stand Road",
    "Ring Road",
    "College Road",
    "Hospital Road",
    "Mill Road",
)

SURNAMES: dict[str, tuple[str, ...]] = {
    "North": (
        "Sharma",
        "Gupta",
        "Verma",
        "Agarwal",
        "Singh",
        "Yadav",
        "Bansal",
        "Jain",
        "Arora",
        "Malhotra",
        "Khanna",
        "Chauhan",
        "Mishra",
        "Tiwari",
        "Khan",
        "Ansari",
    ),
    "West": (
        "Patel",
        "Shah",
        "Mehta",
        "Desai",
        "Joshi",
        "Kulkarni",
        "Patil",
        "Jadhav",
        "Deshmukh",
        "Modi",
        "Thakkar",
        "Shaikh",
        "Pawar",
        "Soni",
    ),
    "South": (
        "Reddy",
        "Naidu",
        "Iyer",
        "Nair",
        "Menon",
        "Rao",
        "Pillai",
        "Shetty",
        "Gowda",
        "Krishnan",
        "Subramanian",
        "Joseph",
        "Thomas",
        "Mathew",
        "Basha",
    ),
    "East": (
        "Das",
        "Banerjee",
        "Chatterjee",
        "Mukherjee",
        "Ghosh",
        "Bose",
        "Sen",
        "Mahato",
        "Sahu",
        "Mohanty",
        "Barua",
        "Prasad",
        "Sinha",
        "Hussain",
    ),
}

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "North": (
        "Ramesh",
        "Suresh",
        "Rajesh",
        "Anil",
        "Sunil",
        "Vikas",
        "Deepak",
        "Manoj",
        "Pooja",
        "Neha",
        "Sanjay",
        "Amit",
        "Rakesh",
        "Imran",
        "Salim",
        "Gurpreet",
    ),
    "West": (
        "Mahesh",
        "Jignesh",
        "Hitesh",
        "Nilesh",
        "Prakash",
        "Ganesh",
        "Santosh",
        "Kiran",
        "Bhavna",
        "Hetal",
        "Rahul",
        "Farhan",
        "Vijay",
        "Dinesh",
    ),
    "South": (
        "Venkatesh",
        "Srinivas",
        "Raghu",
        "Murali",
        "Lakshmi",
        "Anand",
        "Karthik",
        "Prasanna",
        "Suresh",
        "Babu",
        "Gopal",
        "Lakshman",
        "Shiju",
        "Ravi",
        "Priya",
    ),
    "East": (
        "Subrata",
        "Debasish",
        "Sourav",
        "Arindam",
        "Bikash",
        "Pradip",
        "Tapas",
        "Rina",
        "Sanjib",
        "Manas",
        "Ranjit",
        "Dipankar",
        "Sushma",
        "Abdul",
    ),
}

DEITIES: tuple[str, ...] = (
    "Shree Balaji",
    "Sai",
    "Shree Ganesh",
    "Krishna",
    "Durga",
    "Laxmi",
    "Hanuman",
    "Shiv Shakti",
    "Jai Mata Di",
    "Ambika",
    "Om Sai Ram",
    "Gayatri",
    "Radhe Krishna",
    "Mahalaxmi",
)
REGIONAL_DEITIES: dict[str, tuple[str, ...]] = {
    "North": ("Bankey Bihari", "Vaishno", "Shree Shyam"),
    "West": ("Swami Samarth", "Jalaram", "Siddhivinayak"),
    "South": ("Murugan", "Ayyappa", "Sri Venkateswara", "Annapoorna"),
    "East": ("Maa Tara", "Jagannath", "Kamakhya", "Maa Kali"),
}
ADJECTIVES: tuple[str, ...] = (
    "New",
    "Royal",
    "Friends",
    "Lucky",
    "Star",
    "Fresh",
    "Super",
    "City",
    "Apna",
    "Best",
    "Janta",
    "Modern",
)

# Segment -> (name patterns, weight, interval days, favourites (min, max), quantity scale,
# credit limit range in rupees, payment terms in days, lead time extra days).
# Patterns: {s} surname, {f} first name, {d} deity, {a} adjective, {l} locality, {c} city.
SEGMENT_NAME_PATTERNS: dict[str, tuple[str, ...]] = {
    "kirana": (
        "{s} Kirana Store",
        "{d} Kirana",
        "{f} Provision Store",
        "{a} {s} Kirana",
        "{d} Kirana & General",
        "{s} Provision Stores",
        "{f} Kirana Bhandar",
    ),
    "general store": (
        "{s} General Store",
        "{d} General Stores",
        "{a} General Store",
        "{f} General Store",
        "{s} Brothers General Store",
        "{l} General Store",
    ),
    "chemist": (
        "{d} Medicals",
        "{s} Medical Hall",
        "{f} Chemists",
        "{a} Medicos",
        "{s} Pharmacy",
        "{d} Medical & General",
    ),
    "supermarket": (
        "{a} Mart",
        "{s} Super Bazaar",
        "{d} Supermarket",
        "{a} Fresh Mart",
        "{l} Super Market",
        "{s} Hypermart",
    ),
    "paan shop": (
        "{f} Paan Bhandar",
        "{a} Paan Corner",
        "{f} Paan & Cold Drinks",
        "Banarasi Paan {l}",
        "{d} Paan Shop",
    ),
    "bakery": ("{s} Bakers", "{a} Bakery", "{c} Bakery & Sweets", "{f} Bake House", "{d} Bakery"),
    "sweets & namkeen": (
        "{s} Sweets",
        "{d} Mishthan Bhandar",
        "{f} Sweets & Namkeen",
        "{a} Sweet House",
    ),
}


@dataclass(frozen=True)
class Segment:
    name: str
    weight: float
    interval_days: float
    favourites: tuple[int, int]
    quantity_scale: float
    credit_limit: tuple[int, int]
    payment_terms: tuple[int, ...]
    categories: dict[str, float]


_GROCERY = {
    "Biscuits": 3.0,
    "Tea": 2.0,
    "Coffee": 0.8,
    "Noodles": 2.0,
    "Soap": 2.0,
    "Detergent": 2.0,
    "Edible Oil": 2.0,
    "Toothpaste": 1.5,
    "Snacks": 2.0,
    "Dairy": 1.2,
    "Staples": 2.5,
    "Spices": 1.5,
    "Beverages": 1.0,
    "Personal Care": 1.0,
    "Household": 1.0,
    "Confectionery": 1.2,
    "Sauces & Ready Food": 0.8,
    "Health & OTC": 0.3,
    "Baby Care": 0.3,
}

SEGMENTS: tuple[Segment, ...] = (
    Segment("kirana", 0.36, 7.0, (12, 26), 1.0, (50_000, 150_000), (7, 15, 15, 21), _GROCERY),
    Segment(
        "general store",
        0.20,
        8.0,
        (15, 30),
        1.2,
        (75_000, 200_000),
        (15, 21, 30),
        {**_GROCERY, "Household": 1.8, "Personal Care": 1.6},
    ),
    Segment(
        "chemist",
        0.12,
        11.0,
        (8, 16),
        0.6,
        (40_000, 100_000),
        (30, 30, 45),
        {
            "Health & OTC": 4.0,
            "Baby Care": 2.5,
            "Personal Care": 2.5,
            "Toothpaste": 2.0,
            "Soap": 1.5,
            "Beverages": 0.8,
            "Confectionery": 0.5,
            "Biscuits": 0.4,
        },
    ),
    Segment(
        "supermarket",
        0.08,
        4.0,
        (35, 70),
        2.5,
        (300_000, 800_000),
        (30, 45),
        {**_GROCERY, "Health & OTC": 1.0, "Baby Care": 1.2, "Sauces & Ready Food": 1.5},
    ),
    Segment(
        "paan shop",
        0.10,
        5.0,
        (5, 10),
        0.4,
        (10_000, 25_000),
        (7,),
        {
            "Snacks": 3.0,
            "Confectionery": 3.0,
            "Biscuits": 2.0,
            "Beverages": 2.0,
            "Noodles": 0.5,
            "Health & OTC": 0.4,
        },
    ),
    Segment(
        "bakery",
        0.08,
        7.0,
        (8, 15),
        0.7,
        (25_000, 60_000),
        (7, 15),
        {
            "Dairy": 3.0,
            "Biscuits": 2.0,
            "Confectionery": 2.0,
            "Beverages": 1.5,
            "Staples": 1.5,
            "Edible Oil": 1.0,
            "Snacks": 1.0,
        },
    ),
    Segment(
        "sweets & namkeen",
        0.06,
        9.0,
        (8, 15),
        0.8,
        (40_000, 100_000),
        (15,),
        {
            "Dairy": 3.0,
            "Edible Oil": 3.0,
            "Staples": 2.5,
            "Snacks": 2.0,
            "Spices": 1.0,
            "Beverages": 1.0,
        },
    ),
)

# Category -> pack templates: (pack label, MRP per piece in rupees, pieces per case, unit).
PACKS: dict[str, tuple[tuple[str, float, int, str], ...]] = {
    "Biscuits": (("75 g", 10, 120, "case"), ("200 g", 30, 48, "case"), ("600 g", 80, 24, "case")),
    "Tea": (("250 g", 140, 40, "case"), ("500 g", 270, 24, "case"), ("1 kg", 520, 12, "case")),
    "Coffee": (("50 g", 175, 48, "case"), ("100 g", 330, 24, "case"), ("200 g", 620, 12, "case")),
    "Noodles": (
        ("70 g", 14, 96, "case"),
        ("280 g (4-pack)", 56, 24, "case"),
        ("560 g (8-pack)", 110, 12, "case"),
    ),
    "Soap": (("100 g", 35, 72, "case"), ("4 x 100 g", 130, 24, "case")),
    "Detergent": (("1 kg", 110, 24, "case"), ("4 kg", 420, 6, "case"), ("500 g", 58, 48, "case")),
    "Edible Oil": (
        ("1 L pouch", 160, 16, "case"),
        ("5 L jar", 780, 4, "case"),
        ("15 L tin", 2350, 1, "tin"),
    ),
    "Toothpaste": (("100 g", 60, 72, "case"), ("200 g", 110, 36, "case")),
    "Snacks": (("30 g", 10, 120, "case"), ("200 g", 55, 40, "case"), ("400 g", 105, 20, "case")),
    "Dairy": (("100 g", 58, 60, "case"), ("500 g", 275, 20, "case"), ("1 L", 650, 12, "case")),
    "Staples": (("1 kg", 60, 20, "case"), ("5 kg", 290, 4, "bag"), ("10 kg", 560, 2, "bag")),
    "Spices": (("50 g", 40, 100, "case"), ("100 g", 75, 60, "case"), ("500 g", 340, 12, "case")),
    "Beverages": (
        ("200 ml", 20, 60, "case"),
        ("500 g jar", 240, 24, "case"),
        ("1.2 L", 75, 12, "case"),
    ),
    "Personal Care": (
        ("100 ml", 75, 48, "case"),
        ("200 ml", 140, 24, "case"),
        ("400 ml", 260, 12, "case"),
    ),
    "Household": (
        ("500 ml", 99, 24, "case"),
        ("1 L", 185, 12, "case"),
        ("pack of 10", 50, 48, "case"),
    ),
    "Confectionery": (("single", 10, 240, "case"), ("family pack", 95, 40, "case")),
    "Sauces & Ready Food": (("200 g", 55, 48, "case"), ("1 kg", 150, 12, "case")),
    "Health & OTC": (
        ("small", 45, 96, "case"),
        ("medium", 95, 48, "case"),
        ("large", 185, 24, "case"),
    ),
    "Baby Care": (("small pack", 199, 24, "case"), ("large pack", 799, 6, "case")),
}

# Category -> (brand, item, short name used in conversation, price factor, regions where
# it sells better or empty for everywhere). Short names are what owners type on WhatsApp.
ITEMS: dict[str, tuple[tuple[str, str, str, float, tuple[str, ...]], ...]] = {
    "Biscuits": (
        ("Parle", "Parle-G Gluco Biscuits", "Parle-G", 0.8, ()),
        ("Parle", "Monaco Salted Crackers", "Monaco", 1.0, ()),
        ("Parle", "Krackjack", "Krackjack", 1.0, ()),
        ("Parle", "Hide & Seek Choco Chip", "Hide & Seek", 1.5, ()),
        ("Britannia", "Good Day Cashew Cookies", "Good Day", 1.2, ()),
        ("Britannia", "Marie Gold", "Marie Gold", 1.0, ()),
        ("Britannia", "Bourbon", "Bourbon", 1.2, ()),
        ("Britannia", "NutriChoice Digestive", "NutriChoice", 1.6, ()),
        ("Britannia", "Tiger Glucose", "Tiger", 0.8, ()),
        ("Sunfeast", "Dark Fantasy Choco Fills", "Dark Fantasy", 2.5, ()),
        ("Sunfeast", "Mom's Magic Cashew & Almond", "Mom's Magic", 1.3, ()),
        ("Priyagold", "Priyagold Butter Bite", "Butter Bite", 0.9, ("North", "East")),
    ),
    "Tea": (
        ("Tata Tea", "Tata Tea Premium", "Tata Tea Premium", 1.0, ()),
        ("Tata Tea", "Tata Tea Gold", "Tata Tea Gold", 1.2, ()),
        ("Tata Tea", "Tata Tea Agni", "Tata Agni", 0.7, ("North", "East")),
        ("Brooke Bond", "Brooke Bond Red Label", "Red Label", 1.0, ()),
        ("Brooke Bond", "Brooke Bond Taj Mahal", "Taj Mahal", 1.5, ()),
        ("Brooke Bond", "Brooke Bond 3 Roses", "3 Roses", 0.9, ("South",)),
        ("Wagh Bakri", "Wagh Bakri Premium Leaf Tea", "Wagh Bakri", 1.0, ("West",)),
        ("Society", "Society Leaf Tea", "Society Tea", 1.1, ("West",)),
    ),
    "Coffee": (
        ("Nescafe", "Nescafe Classic Instant Coffee", "Nescafe Classic", 1.0, ()),
        ("Bru", "Bru Instant Coffee", "Bru", 0.9, ("South",)),
        ("Nescafe", "Nescafe Sunrise", "Sunrise", 0.8, ("East",)),
        ("Bru", "Bru Gold", "Bru Gold", 1.4, ()),
    ),
    "Noodles": (
        ("Maggi", "Maggi 2-Minute Masala Noodles", "Maggi", 1.0, ()),
        ("Maggi", "Maggi Atta Noodles", "Maggi Atta", 1.2, ()),
        ("Yippee", "Sunfeast Yippee Magic Masala", "Yippee", 1.0, ()),
        ("Top Ramen", "Top Ramen Curry Noodles", "Top Ramen", 0.9, ()),
        ("Ching's Secret", "Ching's Secret Hakka Noodles", "Ching's Hakka", 1.3, ()),
        ("Knorr", "Knorr Soupy Noodles", "Knorr Noodles", 1.0, ()),
    ),
    "Soap": (
        ("Lux", "Lux Soft Touch Soap", "Lux", 1.0, ()),
        ("Lifebuoy", "Lifebuoy Total Soap", "Lifebuoy", 0.9, ()),
        ("Dettol", "Dettol Original Soap", "Dettol soap", 1.2, ()),
        ("Santoor", "Santoor Sandal & Turmeric", "Santoor", 1.0, ()),
        ("Cinthol", "Cinthol Lime Soap", "Cinthol", 1.0, ()),
        ("Dove", "Dove Cream Beauty Bar", "Dove", 1.9, ()),
        ("Pears", "Pears Pure & Gentle", "Pears", 1.6, ()),
        ("Hamam", "Hamam Neem Soap", "Hamam", 1.0, ("South",)),
        ("Medimix", "Medimix Ayurvedic Soap", "Medimix", 1.1, ("South",)),
    ),
    "Detergent": (
        ("Surf Excel", "Surf Excel Easy Wash", "Surf Excel", 1.3, ()),
        ("Surf Excel", "Surf Excel Matic Top Load", "Surf Matic", 2.0, ()),
        ("Ariel", "Ariel Complete", "Ariel", 1.8, ()),
        ("Tide", "Tide Plus Jasmine & Rose", "Tide", 1.0, ()),
        ("Rin", "Rin Advanced", "Rin", 0.9, ()),
        ("Wheel", "Wheel Active 2in1", "Wheel", 0.6, ()),
        ("Ghadi", "Ghadi Detergent Powder", "Ghadi", 0.5, ("North",)),
        ("Nirma", "Nirma Washing Powder", "Nirma", 0.5, ("West",)),
    ),
    "Edible Oil": (
        ("Fortune", "Fortune Sunlite Refined Sunflower Oil", "Fortune Sunflower", 1.0, ()),
        ("Fortune", "Fortune Soyabean Oil", "Fortune Soya", 0.9, ()),
        ("Fortune", "Fortune Kachi Ghani Mustard Oil", "Fortune Mustard", 1.1, ("North", "East")),
        ("Saffola", "Saffola Gold", "Saffola Gold", 1.3, ()),
        ("Dhara", "Dhara Kachi Ghani Mustard Oil", "Dhara", 1.05, ("North", "East")),
        ("Gemini", "Gemini Refined Sunflower Oil", "Gemini", 0.95, ("South",)),
        ("Sundrop", "Sundrop Heart", "Sundrop", 1.1, ("South",)),
        ("Parachute", "Parachute Coconut Oil (cooking)", "Parachute cooking", 1.2, ("South",)),
    ),
    "Toothpaste": (
        ("Colgate", "Colgate Strong Teeth", "Colgate", 1.0, ()),
        ("Colgate", "Colgate MaxFresh", "MaxFresh", 1.2, ()),
        ("Pepsodent", "Pepsodent Germicheck", "Pepsodent", 0.9, ()),
        ("Close-Up", "Close-Up Red Hot Gel", "Close-Up", 1.0, ()),
        ("Dabur", "Dabur Red Paste", "Dabur Red", 1.0, ("North",)),
        ("Sensodyne", "Sensodyne Fresh Mint", "Sensodyne", 2.6, ()),
        ("Patanjali", "Patanjali Dant Kanti", "Dant Kanti", 0.9, ("North", "West")),
    ),
    "Snacks": (
        ("Haldiram's", "Haldiram's Aloo Bhujia", "Aloo Bhujia", 1.0, ()),
        ("Haldiram's", "Haldiram's Moong Dal", "Moong Dal", 1.0, ()),
        ("Bikaji", "Bikaji Bikaneri Bhujia", "Bikaji Bhujia", 1.0, ("North", "West")),
        ("Lay's", "Lay's India's Magic Masala", "Lay's Magic Masala", 1.0, ()),
        ("Lay's", "Lay's Classic Salted", "Lay's Salted", 1.0, ()),
        ("Kurkure", "Kurkure Masala Munch", "Kurkure", 1.0, ()),
        ("Bingo", "Bingo Mad Angles", "Mad Angles", 1.0, ()),
        ("Uncle Chipps", "Uncle Chipps Spicy Treat", "Uncle Chipps", 1.0, ()),
        ("Balaji", "Balaji Wafers Simply Salted", "Balaji Wafers", 0.9, ("West",)),
    ),
    "Dairy": (
        ("Amul", "Amul Butter", "Amul Butter", 1.0, ()),
        ("Amul", "Amul Pure Ghee", "Amul Ghee", 1.1, ()),
        ("Amul", "Amul Cheese Slices", "Amul Cheese", 1.2, ()),
        ("Mother Dairy", "Mother Dairy Cow Ghee", "Mother Dairy Ghee", 1.05, ("North",)),
        ("Nestle", "Nestle Milkmaid", "Milkmaid", 0.6, ()),
        ("Nestle", "Nestle Everyday Dairy Whitener", "Everyday", 0.7, ()),
        ("Milma", "Milma Ghee", "Milma Ghee", 1.0, ("South",)),
    ),
    "Staples": (
        ("Aashirvaad", "Aashirvaad Shudh Chakki Atta", "Aashirvaad Atta", 1.0, ()),
        ("Pillsbury", "Pillsbury Chakki Fresh Atta", "Pillsbury Atta", 0.95, ()),
        ("Fortune", "Fortune Chakki Fresh Atta", "Fortune Atta", 0.9, ()),
        ("Tata Salt", "Tata Salt Iodised", "Tata Salt", 0.4, ()),
        ("Tata Sampann", "Tata Sampann Toor Dal", "Tata Toor Dal", 2.4, ()),
        ("India Gate", "India Gate Basmati Rice Classic", "India Gate", 2.8, ()),
        ("Daawat", "Daawat Rozana Basmati Rice", "Daawat", 1.9, ()),
        ("Madhur", "Madhur Pure Sugar", "Madhur Sugar", 0.8, ()),
        ("Rajdhani", "Rajdhani Besan", "Rajdhani Besan", 1.6, ("North",)),
    ),
    "Spices": (
        ("MDH", "MDH Deggi Mirch", "Deggi Mirch", 1.0, ("North",)),
        ("MDH", "MDH Garam Masala", "MDH Garam Masala", 1.1, ()),
        ("MDH", "MDH Chana Masala", "Chana Masala", 1.0, ()),
        ("Everest", "Everest Kitchen King Masala", "Kitchen King", 1.0, ()),
        ("Everest", "Everest Tikhalal Chilli Powder", "Tikhalal", 0.9, ()),
        ("Catch", "Catch Turmeric Powder", "Catch Haldi", 0.7, ()),
        ("Aachi", "Aachi Sambar Powder", "Aachi Sambar", 0.9, ("South",)),
        ("Eastern", "Eastern Chicken Masala", "Eastern Masala", 1.0, ("South",)),
    ),
    "Beverages": (
        ("Frooti", "Frooti Mango Drink", "Frooti", 1.0, ()),
        ("Maaza", "Maaza Mango", "Maaza", 1.0, ()),
        ("Bournvita", "Cadbury Bournvita", "Bournvita", 1.0, ()),
        ("Horlicks", "Horlicks Classic Malt", "Horlicks", 1.05, ()),
        ("Boost", "Boost Health Drink", "Boost", 1.0, ("South",)),
        ("Rasna", "Rasna Fruit Plus", "Rasna", 0.6, ()),
        ("Tang", "Tang Orange", "Tang", 0.9, ()),
        ("Thums Up", "Thums Up", "Thums Up", 1.0, ()),
    ),
    "Personal Care": (
        ("Clinic Plus", "Clinic Plus Strong & Long Shampoo", "Clinic Plus", 1.0, ()),
        ("Head & Shoulders", "Head & Shoulders Anti-Dandruff", "Head & Shoulders", 1.6, ()),
        ("Parachute", "Parachute Coconut Hair Oil", "Parachute", 1.0, ()),
        ("Dabur", "Dabur Amla Hair Oil", "Dabur Amla", 1.0, ("North",)),
        ("Nivea", "Nivea Soft Cream", "Nivea", 1.8, ()),
        ("Glow & Lovely", "Glow & Lovely Cream", "Glow & Lovely", 1.2, ()),
        ("Vaseline", "Vaseline Intensive Care Lotion", "Vaseline", 1.7, ()),
        ("Himalaya", "Himalaya Neem Face Wash", "Himalaya Face Wash", 1.3, ()),
    ),
    "Household": (
        ("Harpic", "Harpic Power Plus Toilet Cleaner", "Harpic", 1.0, ()),
        ("Lizol", "Lizol Floor Cleaner Citrus", "Lizol", 1.1, ()),
        ("Vim", "Vim Dishwash Liquid", "Vim", 0.9, ()),
        ("Exo", "Exo Dishwash Bar", "Exo", 0.5, ("South", "West")),
        ("Odonil", "Odonil Room Freshener", "Odonil", 0.8, ()),
        ("Good Knight", "Good Knight Gold Flash Refill", "Good Knight", 0.9, ()),
        ("All Out", "All Out Ultra Refill", "All Out", 0.9, ()),
        ("Hit", "Hit Cockroach Spray", "Hit", 1.9, ()),
    ),
    "Confectionery": (
        ("Cadbury", "Cadbury Dairy Milk", "Dairy Milk", 1.0, ()),
        ("Cadbury", "Cadbury 5 Star", "5 Star", 1.0, ()),
        ("Cadbury", "Cadbury Perk", "Perk", 0.9, ()),
        ("Nestle", "Nestle KitKat", "KitKat", 1.1, ()),
        ("Nestle", "Nestle Munch", "Munch", 0.9, ()),
        ("Cadbury", "Cadbury Eclairs", "Eclairs", 0.5, ()),
        ("Alpenliebe", "Alpenliebe Caramel", "Alpenliebe", 0.4, ()),
        ("Pulse", "Pass Pass Pulse Kachcha Aam", "Pulse", 0.4, ()),
        ("Center Fresh", "Center Fresh Mint", "Center Fresh", 0.4, ()),
    ),
    "Sauces & Ready Food": (
        ("Kissan", "Kissan Fresh Tomato Ketchup", "Kissan Ketchup", 1.0, ()),
        ("Maggi", "Maggi Hot & Sweet Sauce", "Maggi Hot & Sweet", 1.0, ()),
        ("MTR", "MTR Ready to Eat Dal Makhani", "MTR Dal Makhani", 1.3, ()),
        ("Knorr", "Knorr Classic Tomato Soup", "Knorr Soup", 0.9, ()),
        ("Ching's Secret", "Ching's Schezwan Chutney", "Schezwan Chutney", 1.1, ()),
    ),
    "Health & OTC": (
        ("Dettol", "Dettol Antiseptic Liquid", "Dettol liquid", 1.3, ()),
        ("Savlon", "Savlon Antiseptic Liquid", "Savlon", 1.2, ()),
        ("Vicks", "Vicks VapoRub", "Vicks", 1.0, ()),
        ("Eno", "Eno Fruit Salt Lemon", "Eno", 0.6, ()),
        ("Hajmola", "Dabur Hajmola", "Hajmola", 0.5, ()),
        ("Dabur", "Dabur Chyawanprash", "Chyawanprash", 2.5, ()),
        ("Zandu", "Zandu Balm", "Zandu Balm", 0.7, ()),
        ("Moov", "Moov Pain Relief Cream", "Moov", 1.2, ()),
        ("Whisper", "Whisper Ultra Soft XL", "Whisper", 1.5, ()),
        ("Stayfree", "Stayfree Secure XL", "Stayfree", 1.3, ()),
        ("Volini", "Volini Pain Relief Spray", "Volini", 1.6, ()),
    ),
    "Baby Care": (
        ("Pampers", "Pampers All Round Protection Pants", "Pampers", 1.0, ()),
        ("Huggies", "Huggies Wonder Pants", "Huggies", 0.95, ()),
        ("Himalaya", "Himalaya Baby Powder", "Himalaya Baby", 0.3, ()),
        ("Johnson's", "Johnson's Baby Shampoo", "Johnson's Baby", 0.4, ()),
        ("Cerelac", "Nestle Cerelac Wheat Apple", "Cerelac", 0.5, ()),
    ),
}

# Categories bought in bulk before festivals (the rest gets a smaller lift).
FESTIVE_CATEGORIES: frozenset[str] = frozenset(
    {"Biscuits", "Snacks", "Edible Oil", "Dairy", "Staples", "Confectionery", "Beverages", "Spices"}
)

# Month-of-year demand multipliers per category (1-based month index into the tuple).
SEASONALITY: dict[str, tuple[float, ...]] = {
    "Beverages": (0.8, 0.9, 1.1, 1.4, 1.6, 1.4, 1.0, 0.9, 0.9, 0.9, 0.8, 0.8),
    "Tea": (1.25, 1.15, 1.0, 0.9, 0.85, 0.85, 0.95, 1.0, 1.0, 1.05, 1.15, 1.25),
    "Coffee": (1.2, 1.1, 1.0, 0.9, 0.85, 0.9, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2),
    "Health & OTC": (1.3, 1.2, 1.0, 0.9, 0.85, 0.9, 1.1, 1.1, 1.0, 1.0, 1.1, 1.3),
    "Confectionery": (1.0, 1.1, 1.0, 0.9, 0.85, 0.9, 0.95, 1.0, 1.0, 1.05, 1.1, 1.2),
    "Household": (0.9, 0.9, 1.0, 1.0, 1.0, 1.1, 1.2, 1.2, 1.1, 1.1, 0.9, 0.9),
}

# Festival calendar: (festival, date, regions where it peaks (empty = all), lift).
# The dates of moving festivals are those published for 2023-2027; outside those years only
# the fixed-date ones (Christmas/New Year) are known.
_FESTIVAL_DATES: dict[str, tuple[str, ...]] = {
    "Diwali": ("2023-11-12", "2024-11-01", "2025-10-20", "2026-11-08", "2027-10-29"),
    "Holi": ("2023-03-08", "2024-03-25", "2025-03-14", "2026-03-04", "2027-03-22"),
    "Eid": ("2023-04-22", "2024-04-11", "2025-03-31", "2026-03-21", "2027-03-10"),
    "Durga Puja": ("2023-10-24", "2024-10-12", "2025-10-02", "2026-10-20", "2027-10-09"),
    "Onam": ("2023-08-29", "2024-09-15", "2025-09-05", "2026-08-26", "2027-09-12"),
    "Ganesh Chaturthi": ("2023-09-19", "2024-09-07", "2025-08-27", "2026-09-14", "2027-09-04"),
}
_FESTIVAL_REGIONS: dict[str, tuple[tuple[str, ...], float]] = {
    "Diwali": ((), 1.9),
    "Holi": (("North", "West", "East"), 1.35),
    "Eid": ((), 1.25),
    "Durga Puja": (("East",), 1.6),
    "Onam": (("South",), 1.5),
    "Ganesh Chaturthi": (("West",), 1.4),
    "Christmas/New Year": ((), 1.2),
}


@dataclass(frozen=True)
class Festival:
    name: str
    date: dt.date
    regions: tuple[str, ...]
    lift: float


def festivals_between(start: dt.date, end: dt.date) -> list[Festival]:
    """The festivals whose date falls in [start, end + 30 days], in date order."""
    found: list[Festival] = []
    for name, dates in _FESTIVAL_DATES.items():
        regions, lift = _FESTIVAL_REGIONS[name]
        for text in dates:
            day = dt.date.fromisoformat(text)
            if start <= day <= end + dt.timedelta(days=30):
                found.append(Festival(name, day, regions, lift))
    regions, lift = _FESTIVAL_REGIONS["Christmas/New Year"]
    for year in range(start.year, end.year + 1):
        day = dt.date(year, 12, 25)
        if start <= day <= end + dt.timedelta(days=30):
            found.append(Festival("Christmas/New Year", day, regions, lift))
    found.sort(key=lambda f: (f.date, f.name))
    return found


# Why a store slowed down or stopped, as reps write it in visit notes.
SLOWDOWN_REASONS: tuple[str, ...] = (
    "a new D-Mart opened two streets away",
    "the road in front of the shop is dug up for metro work",
    "the owner's son has taken over and is cutting stock",
    "a competing distributor is giving 2% extra margin",
    "footfall dropped after the nearby school shifted",
    "the owner is unwell and the shop opens only half day",
)
STOP_REASONS: tuple[str, ...] = (
    "shop shut down, owner moved back to his village",
    "switched fully to another distributor offering longer credit",
    "shop closed for renovation, no reopening date given",
    "owner converted the shop into a mobile accessories store",
    "building taken up for redevelopment, shop vacated",
)

PAYMENT_METHODS: tuple[str, ...] = ("upi", "cash", "cheque", "neft")
ORDER_CHANNELS: tuple[str, ...] = ("rep_visit", "phone", "whatsapp", "telegram", "web")
ORDER_CHANNEL_WEIGHTS: tuple[float, ...] = (0.48, 0.2, 0.22, 0.05, 0.05)

# Demo staff: (first, last) names for managers and reps.
MANAGER_NAMES: tuple[tuple[str, str], ...] = (
    ("Rajiv", "Malhotra"),
    ("Kavita", "Iyer"),
    ("Arjun", "Sengupta"),
    ("Meena", "Deshpande"),
)
REP_NAMES: tuple[tuple[str, str], ...] = (
    ("Ravi", "Kumar"),
    ("Priya", "Sharma"),
    ("Amit", "Verma"),
    ("Sunita", "Patel"),
    ("Vikram", "Joshi"),
    ("Lakshmi", "Narayanan"),
    ("Arun", "Reddy"),
    ("Deepa", "Menon"),
    ("Sourav", "Das"),
    ("Farhan", "Ali"),
    ("Neha", "Gupta"),
    ("Karthik", "Raman"),
)
